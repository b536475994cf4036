package audit

import "sync"

// Denial summarisation, as for reads: ObserveDeny records the first refusal
// of each (uid, gid) at once; repeats are counted and written as one "deny"
// record with "count" per peer and summary interval. A refused peer can
// open connections as fast as the kernel allows, so this is what keeps a
// flood of them from flooding the trail.

type denyKey struct {
	uid, gid uint32
	known    bool // SO_PEERCRED was read
}

type denyEntry struct {
	n    int64 // refusals since the last sweep (not counting the first)
	pid  int32 // of the latest refusal
	idle int   // sweeps without refusals
}

type denyTracker struct {
	mu  sync.Mutex
	m   map[denyKey]*denyEntry
	max int
}

func (t *denyTracker) init(max int) {
	t.m = make(map[denyKey]*denyEntry)
	t.max = max
}

// observe counts one refusal and reports whether it must be recorded on
// its own.
func (t *denyTracker) observe(k denyKey, pid int32) (record bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[k]; e != nil {
		e.n++
		e.pid = pid
		return false
	}
	if len(t.m) >= t.max {
		return true
	}
	t.m[k] = &denyEntry{pid: pid}
	return true
}

type denySummary struct {
	peer  Peer
	known bool
	count uint64
}

// sweep appends a summary for every peer refused since the last sweep and
// drops peers idle for idleSweeps sweeps.
func (t *denyTracker) sweep(out []denySummary) []denySummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.m {
		if e.n > 0 {
			out = append(out, denySummary{peer: Peer{UID: k.uid, GID: k.gid, PID: e.pid}, known: k.known, count: uint64(e.n)})
			e.n, e.idle = 0, 0
			continue
		}
		if e.idle++; e.idle >= idleSweeps {
			delete(t.m, k)
		}
	}
	return out
}

// ObserveDeny notes that the socket refused a peer (nil: its credentials
// could not be read). The first refusal of each (uid, gid) is recorded at
// once with credential (the set it asked for, "" if it asked for none) and
// detail; further refusals are counted and summarised, one "deny" record
// with "count" per peer and summary interval that saw any. The counts of
// all deny records for a peer add up to the refusals.
func (l *Logger) ObserveDeny(p *Peer, credential, detail string) {
	if l == nil {
		return
	}
	k := denyKey{}
	var pid int32
	if p != nil {
		k = denyKey{uid: p.UID, gid: p.GID, known: true}
		pid = p.PID
	}
	if !l.denies.observe(k, pid) {
		return
	}
	l.Log(Record{Event: Deny, Credential: credential, Peer: p, Result: resultDenied, Detail: detail})
}
