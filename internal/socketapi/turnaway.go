package socketapi

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/credlet/credlet/internal/audit"
)

// Turning connections away. A refused peer, or a connection past the caps,
// never becomes a served connection: while fewer than maxTurningAway are
// being turned away, one gets turnAwayTimeout to send its request head
// (read through a small buffer) and is answered 403 forbidden or 503 busy
// with the reason, then closed; past that it is closed at once, unanswered.
// So a peer that opens thousands of connections and sends nothing holds at
// most maxTurningAway of the agent's descriptors, for a second each.

// turnAwayBuffer is the read buffer of a connection being turned away: a
// request head longer than this is not worth an answer.
const turnAwayBuffer = 1 << 10

// refused counts and logs a refused connection (the log line is
// summarised per peer, see denyLog).
func (s *Server) refused(p peer) {
	if s.m != nil {
		s.m.SocketDenied.Inc()
	}
	if s.denials.note(p, s.clock.Now()) {
		s.log.Warn("socket peer not allowed", "peer_uid", p.UID, "peer_gid", p.GID, "peer_pid", p.PID,
			"peer_known", p.known, "repeats", "summarised every "+denySummaryInterval.String())
	}
}

// turnAway answers a connection that is not served (refused, or past the
// caps) and closes it; see above.
func (s *Server) turnAway(nc net.Conn, p peer, conns *connSet) {
	if s.turningAway.Add(1) > maxTurningAway {
		s.turningAway.Add(-1)
		_ = nc.Close()
		s.auditRefusal(p, "")
		return
	}
	conns.wg.Add(1)
	go func() {
		defer conns.wg.Done()
		defer s.turningAway.Add(-1)
		defer nc.Close()
		name := s.answerTurnedAway(nc, p)
		s.auditRefusal(p, name)
	}()
}

// answerTurnedAway reads one request head and answers why the connection
// is not served. It returns the credential the request named, if any.
func (s *Server) answerTurnedAway(nc net.Conn, p peer) (credential string) {
	_ = nc.SetDeadline(time.Now().Add(turnAwayTimeout))
	c := &conn{s: s, nc: nc, peer: p}
	var req httpRequest
	if err := readRequest(bufio.NewReaderSize(nc, turnAwayBuffer), &req); err != nil {
		return ""
	}
	var r response
	if p.allowed {
		r = s.fail(&apiError{http.StatusServiceUnavailable, "busy",
			fmt.Sprintf("too many connections (at most %d, %d per uid); close idle ones or retry later", s.maxConns, s.maxPerUID)})
	} else {
		r = s.deny(&req, p)
		if n, ok := strings.CutPrefix(req.path, credentialsPrefix); ok && len(n) <= 63 {
			credential = n
		}
	}
	c.write(&req, r, true)
	return credential
}

// auditRefusal writes the deny record of a refused peer (summarised per
// peer by the audit logger). Connections turned away for the caps are not
// refusals.
func (s *Server) auditRefusal(p peer, credential string) {
	if p.allowed {
		return
	}
	if !p.known {
		s.audit.ObserveDeny(nil, credential, "peer credentials unavailable")
		return
	}
	s.audit.ObserveDeny(&audit.Peer{UID: p.UID, GID: p.GID, PID: p.PID}, credential,
		fmt.Sprintf("peer uid %d gid %d not in the allow list", p.UID, p.GID))
}

// denyLog summarises the log line for refused connections: the first of
// each peer (uid, gid) in a summary interval is logged at once, the rest
// counted and logged as one line per peer by flush.
type denyLog struct {
	mu     sync.Mutex
	m      map[denyLogKey]int // refusals after the first, since the last flush
	others int                // refusals of peers past maxDenyLogPeers
	since  time.Time
}

type denyLogKey struct {
	uid, gid uint32
	known    bool
}

// maxDenyLogPeers bounds the peers denyLog tracks between flushes.
const maxDenyLogPeers = 256

// note counts a refusal and reports whether to log it now.
func (d *denyLog) note(p peer, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m, d.since = map[denyLogKey]int{}, now
	}
	k := denyLogKey{p.UID, p.GID, p.known}
	if n, ok := d.m[k]; ok {
		d.m[k] = n + 1
		return false
	}
	if len(d.m) >= maxDenyLogPeers {
		d.others++
		return false
	}
	d.m[k] = 0
	return true
}

// flush logs one line per peer refused again since the last flush, and
// forgets them all.
func (d *denyLog) flush(log *slog.Logger, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, n := range d.m {
		if n > 0 {
			log.Warn("socket peer not allowed, repeated", "peer_uid", k.uid, "peer_gid", k.gid, "peer_known", k.known,
				"count", n, "since", d.since.UTC().Format(time.RFC3339))
		}
	}
	if d.others > 0 {
		log.Warn("socket peers not allowed, repeated", "peers", "more than "+fmt.Sprint(maxDenyLogPeers), "count", d.others,
			"since", d.since.UTC().Format(time.RFC3339))
	}
	clear(d.m)
	d.others, d.since = 0, now
}
