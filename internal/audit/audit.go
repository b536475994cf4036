package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Event names, as in INTERFACE.md.
type Event string

// The events the agent records.
const (
	Login   Event = "login"
	Renew   Event = "renew"
	Fetch   Event = "fetch"
	Decrypt Event = "decrypt"
	Commit  Event = "commit"
	Read    Event = "read"
	Deny    Event = "deny"
	Verify  Event = "verify"
	Gap     Event = "gap"
)

// Peer identifies a socket caller (from SO_PEERCRED).
type Peer struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	PID int32  `json:"pid"`
}

// Record is what a caller reports; the logger adds ts, seq, prev and hash.
// Never put a secret value or a token in it.
type Record struct {
	Event      Event
	Credential string
	Version    int
	Peer       *Peer
	Result     string // "ok", "error", "denied", ...
	Detail     string
}

// Logger writes the hash-chained audit trail.
// TODO(audit): bounded queue, read summaries, gap records (issue 5).
type Logger struct {
	mu   sync.Mutex
	w    io.Writer
	seq  uint64
	prev string
	now  func() time.Time
}

// New returns a logger writing to w.
func New(w io.Writer) *Logger { return &Logger{w: w, now: time.Now} }

// Run drains the queue until ctx ends.
func (l *Logger) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Log records r. It never blocks the caller for long.
func (l *Logger) Log(r Record) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	line := line{TS: l.now().UTC().Format(time.RFC3339Nano), Seq: l.seq, Event: r.Event, Credential: r.Credential,
		Version: r.Version, Peer: r.Peer, Result: r.Result, Detail: r.Detail, Prev: l.prev}
	b, _ := json.Marshal(line)
	sum := sha256.Sum256(b)
	line.Hash = hex.EncodeToString(sum[:])
	l.prev = line.Hash
	b, _ = json.Marshal(line)
	_, _ = l.w.Write(append(b, '\n'))
}

// ObserveRead records a read by peer of a version.
func (l *Logger) ObserveRead(p Peer, credential string, version int) {
	l.Log(Record{Event: Read, Credential: credential, Version: version, Peer: &p, Result: "ok"})
}

type line struct {
	TS         string `json:"ts"`
	Seq        uint64 `json:"seq"`
	Event      Event  `json:"event"`
	Credential string `json:"credential,omitempty"`
	Version    int    `json:"version,omitempty"`
	Peer       *Peer  `json:"peer,omitempty"`
	Result     string `json:"result"`
	Detail     string `json:"detail,omitempty"`
	Prev       string `json:"prev"`
	Hash       string `json:"hash,omitempty"`
}
