package audit

import (
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/credlet/credlet/internal/clock"
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
	// VerifyEvent is the "verify" event (a blue/green check of a candidate
	// version). It is not named Verify: that is the chain checker.
	VerifyEvent Event = "verify"
	// Gap is written by the logger itself: "count" records were lost (queue
	// full or a failed write) between the previous line and this one.
	Gap Event = "gap"
)

// known reports whether e is one of the events above.
func (e Event) known() bool {
	switch e {
	case Login, Renew, Fetch, Decrypt, Commit, Read, Deny, VerifyEvent, Gap:
		return true
	}
	return false
}

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
	Detail     string // at most 1 KiB is kept
}

// Results the logger writes itself.
const (
	resultOK      = "ok"
	resultDropped = "dropped"
	resultDenied  = "denied"
)

// ErrRunning is returned by a second concurrent call of Run.
var ErrRunning = errors.New("audit: logger already running")

// Defaults; see the options.
const (
	DefaultQueueSize       = 4096
	DefaultSummaryInterval = time.Minute
	DefaultSyncInterval    = time.Second
	// DefaultMaxTracked bounds the (peer, credential, version) keys whose
	// repeated reads are summarised; reads of keys beyond it are recorded one
	// by one (and so, under a flood, end up counted in gap records).
	DefaultMaxTracked = 1 << 16
)

// Options configure a Logger. Zero values take the defaults.
type Options struct {
	// Clock times records, the summary minute and the fsync interval
	// (default clock.Real).
	Clock clock.Clock
	// QueueSize is how many records may wait for the writer (default
	// DefaultQueueSize). Beyond it, records are dropped and counted in a gap
	// record.
	QueueSize int
	// SyncInterval is how long written records may wait for an fsync
	// (default DefaultSyncInterval). Only writers with a Sync method are
	// synced.
	SyncInterval time.Duration
	// Logger is where write failures are reported (default: discarded).
	Logger *slog.Logger
}

type options struct {
	clock      clock.Clock
	queue      int
	summary    time.Duration
	sync       time.Duration
	maxTracked int
	log        *slog.Logger
}

func (o Options) withDefaults() options {
	out := options{
		clock: o.Clock, queue: o.QueueSize, summary: DefaultSummaryInterval, sync: o.SyncInterval,
		maxTracked: DefaultMaxTracked, log: o.Logger,
	}
	if out.clock == nil {
		out.clock = clock.Real
	}
	if out.queue <= 0 {
		out.queue = DefaultQueueSize
	}
	if out.sync <= 0 {
		out.sync = DefaultSyncInterval
	}
	if out.log == nil {
		out.log = slog.New(slog.DiscardHandler)
	}
	return out
}

// Logger writes the hash-chained audit trail. Log and ObserveRead may be
// called from any goroutine and never block; Run, the only writer, drains
// the queue. A nil *Logger records nothing.
type Logger struct {
	w       io.Writer
	opt     options
	queue   chan entry
	dropped atomic.Uint64 // records refused because the queue was full
	running atomic.Bool
	reads   readTracker
	denies  denyTracker
	head    writtenHead

	// Owned by Run.
	seq  uint64
	prev string
}

// entry is a queued record with the time it was logged.
type entry struct {
	ts      time.Time
	rec     Record // rec.Peer is always nil here
	peer    Peer   // copy of the caller's *Peer, so it may be reused
	hasPeer bool
}

// Chained is implemented by writers that continue an existing chain, such
// as the file Open returns: Head reports the last record's seq and hash.
type Chained interface {
	Head() (seq uint64, hash string)
}

// New returns a logger writing to w. If w implements Chained, the first
// record continues that chain; otherwise it starts a new one (seq 1, prev
// ""). Call Run to write anything; close w only after Run returned. opts
// is at most one Options; none takes the defaults.
func New(w io.Writer, opts ...Options) *Logger {
	var given Options
	if len(opts) > 0 {
		given = opts[0]
	}
	o := given.withDefaults()
	l := &Logger{w: w, opt: o, queue: make(chan entry, o.queue)}
	l.reads.init(int64(o.maxTracked))
	l.denies.init(o.maxTracked)
	if c, ok := w.(Chained); ok {
		l.seq, l.prev = c.Head()
		l.head.set(l.seq, l.prev)
	}
	return l
}

// Log queues r for the writer and returns at once. If the queue is full the
// record is dropped and counted; the writer then records a gap. The caller
// may reuse r.Peer afterwards.
func (l *Logger) Log(r Record) {
	if l == nil {
		return
	}
	e := entry{ts: l.opt.clock.Now(), rec: r}
	if r.Peer != nil {
		e.peer, e.hasPeer = *r.Peer, true
		e.rec.Peer = nil
	}
	l.enqueue(e)
}

func (l *Logger) enqueue(e entry) {
	select {
	case l.queue <- e:
	default:
		l.dropped.Add(1)
	}
}

// ObserveRead notes that peer read version of credential. The first read of
// each (peer uid and pid, credential, version) is recorded at once; repeats
// are counted and summarised, one record per key and summary interval that
// saw any. It is cheap enough to call on every socket read.
func (l *Logger) ObserveRead(peer Peer, credential string, version int) {
	if l == nil {
		return
	}
	if !l.reads.observe(peer, credential, version) {
		return
	}
	// Not through Log: a *Peer passed there escapes, and this is the hot path.
	l.enqueue(entry{
		ts:   l.opt.clock.Now(),
		rec:  Record{Event: Read, Credential: credential, Version: version, Result: resultOK},
		peer: peer, hasPeer: true,
	})
}
