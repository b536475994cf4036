package audit

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
)

// Read summarisation. ObserveRead runs on every socket read, so its common
// case (a key already tracked) is a read-locked map lookup in one of 32
// shards plus one atomic add; the writer sweeps the table once per summary
// interval, swapping each counter to zero.

const (
	readShards = 32
	// idleSweeps is how many sweeps without a read a key survives before it
	// is dropped; a later read of it is then recorded at once again.
	idleSweeps = 5
	// dead marks an entry removed from its shard: an add that sees a
	// negative result knows its count did not land and re-inserts the key.
	dead = math.MinInt64 / 2
)

type readKey struct {
	uid        uint32
	pid        int32
	version    int
	credential string
}

type readEntry struct {
	n    atomic.Int64 // reads since the last sweep (not counting the first)
	gid  uint32       // from the first read
	idle int          // sweeps without reads; only the sweeper touches it
}

type readShard struct {
	mu sync.RWMutex
	m  map[readKey]*readEntry
	_  [64 - 32]byte // keep shards on separate cache lines
}

type readTracker struct {
	seed   maphash.Seed
	size   atomic.Int64
	max    int64
	shards [readShards]readShard
}

func (t *readTracker) init(max int64) {
	t.seed = maphash.MakeSeed()
	t.max = max
	for i := range t.shards {
		t.shards[i].m = make(map[readKey]*readEntry)
	}
}

func (t *readTracker) shard(k *readKey) *readShard {
	h := maphash.String(t.seed, k.credential)
	h ^= uint64(k.uid)<<32 | uint64(uint32(k.pid))
	h ^= uint64(k.version) * 0x9e3779b97f4a7c15
	h ^= h >> 29
	return &t.shards[h%readShards]
}

// observe counts one read and reports whether it must be recorded on its
// own: the key's first read, the first after it went idle, or any read of a
// key the full table cannot take.
func (t *readTracker) observe(p Peer, credential string, version int) (record bool) {
	k := readKey{uid: p.UID, pid: p.PID, version: version, credential: credential}
	s := t.shard(&k)
	for {
		s.mu.RLock()
		e := s.m[k]
		s.mu.RUnlock()
		if e != nil && e.n.Add(1) > 0 {
			return false
		}
		// Absent, or killed by a sweep after we found it. A sweep kills and
		// deletes an entry under the shard lock, so whatever is in the map now
		// is live: someone else inserted it meanwhile, and the read counts there.
		s.mu.Lock()
		if s.m[k] != nil {
			s.mu.Unlock()
			continue
		}
		if t.size.Load() >= t.max {
			s.mu.Unlock()
			return true
		}
		t.size.Add(1)
		s.m[k] = &readEntry{gid: p.GID}
		s.mu.Unlock()
		return true
	}
}

// summary is one key's repeated reads over a sweep interval.
type summary struct {
	peer       Peer
	credential string
	version    int
	count      uint64
}

// sweep appends a summary for every key read since the last sweep and
// drops keys idle for idleSweeps sweeps.
func (t *readTracker) sweep(out []summary) []summary {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if n := e.n.Swap(0); n > 0 {
				out = append(out, summary{
					peer:       Peer{UID: k.uid, GID: e.gid, PID: k.pid},
					credential: k.credential, version: k.version, count: uint64(n),
				})
				e.idle = 0
				continue
			}
			e.idle++
			if e.idle >= idleSweeps && e.n.CompareAndSwap(0, dead) {
				delete(s.m, k)
				t.size.Add(-1)
			}
		}
		s.mu.Unlock()
	}
	return out
}
