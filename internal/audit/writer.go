package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/oneline"
)

// maxBatch is how many queued records the writer encodes before it writes
// them out in one call and looks at its timers again.
const maxBatch = 512

// Run writes queued records, read summaries (every summary interval) and
// gap records until ctx ends; then it writes what is still queued and the
// pending read summaries, syncs, and returns nil. Writers with a
// Sync() error method (files) are synced at most one sync interval after a
// write. A failed write is reported to the logger given by WithLogger and
// counted in the next gap record; it does not stop Run.
func (l *Logger) Run(ctx context.Context) error {
	if l == nil {
		<-ctx.Done()
		return nil
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer l.running.Store(false)

	clk := l.opt.clock
	w := &batchWriter{l: l, since: clk.Now()}
	w.syncer, _ = l.w.(interface{ Sync() error })

	summaryT := clk.NewTimer(l.opt.summary)
	var syncT clock.Timer
	var syncC <-chan time.Time
	defer func() {
		summaryT.Stop()
		if syncT != nil {
			syncT.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			w.begin()
			// Producers may still be logging: take at most one queue's worth.
			w.drain(cap(l.queue))
			w.summarise(clk.Now())
			w.flush()
			w.sync()
			return nil
		case e := <-l.queue:
			w.begin()
			w.add(e)
			w.drain(maxBatch - 1)
			w.flush()
			if w.syncer != nil && syncT == nil {
				syncT = clk.NewTimer(l.opt.sync)
				syncC = syncT.C()
			}
		case <-summaryT.C():
			w.begin()
			w.summarise(clk.Now())
			w.flush()
			summaryT = clk.NewTimer(l.opt.summary)
		case <-syncC:
			w.sync()
			syncT, syncC = nil, nil
		}
	}
}

// batchWriter encodes records into one buffer and writes it with one call,
// keeping the chain consistent with what actually reached the writer.
type batchWriter struct {
	l       *Logger
	syncer  interface{ Sync() error }
	buf     []byte
	lines   []written
	lost    uint64 // records that failed to write, for the next gap record
	since   time.Time
	sums    []summary
	dsums   []denySummary
	failing bool // a write failed and has not succeeded since
	dirty   bool // written but not synced
}

// written is what rolling back to the end of one line needs.
type written struct {
	end     int // offset in buf just past the line's '\n'
	seq     uint64
	prev    string
	hash    string
	records uint64 // caller records the line stands for, if it is lost
}

// drain adds up to n queued records, without waiting for more.
func (w *batchWriter) drain(n int) {
	for range n {
		select {
		case e := <-w.l.queue:
			w.add(e)
		default:
			return
		}
	}
}

func (w *batchWriter) add(e entry) {
	r := e.rec
	ln := line{
		TS: e.ts, Event: r.Event, Credential: r.Credential, Version: r.Version,
		Result: r.Result, Detail: oneline.Clip(r.Detail, maxDetail),
	}
	if e.hasPeer {
		ln.Peer = &e.peer
	}
	w.append(&ln, 1)
}

func (w *batchWriter) append(ln *line, records uint64) {
	w.l.seq++
	ln.Seq, ln.Prev = w.l.seq, w.l.prev
	w.buf = appendLine(w.buf, ln)
	w.l.prev = ln.Hash
	w.lines = append(w.lines, written{end: len(w.buf), seq: ln.Seq, prev: ln.Prev, hash: ln.Hash, records: records})
}

// summarise appends one read record per key read again since the last
// summary.
func (w *batchWriter) summarise(now time.Time) {
	w.sums = w.l.reads.sweep(w.sums[:0])
	detail := "repeated reads since " + w.since.UTC().Format(tsLayout)
	for i := range w.sums {
		s := &w.sums[i]
		w.append(&line{
			TS: now, Event: Read, Credential: s.credential, Version: s.version, Peer: &s.peer,
			Result: resultOK, Count: s.count, Detail: detail,
		}, 0)
	}
	w.dsums = w.l.denies.sweep(w.dsums[:0])
	for i := range w.dsums {
		s := &w.dsums[i]
		ln := &line{TS: now, Event: Deny, Result: resultDenied, Count: s.count,
			Detail: "repeated refusals since " + w.since.UTC().Format(tsLayout)}
		if s.known {
			ln.Peer = &s.peer
		}
		w.append(ln, 0)
	}
	w.since = now
}

// begin starts a batch: records lost to failed writes happened before it,
// so their gap record comes first.
func (w *batchWriter) begin() {
	if w.lost > 0 {
		lost := w.lost
		w.lost = 0
		w.append(&line{
			TS: w.l.opt.clock.Now(), Event: Gap, Result: resultDropped, Count: lost,
			Detail: fmt.Sprintf("%d records lost: audit write failed", lost),
		}, lost)
	}
}

// flush ends a batch: records dropped from the full queue while it was
// being drained get a gap record after it; then the batch is written.
func (w *batchWriter) flush() {
	if dropped := w.l.dropped.Swap(0); dropped > 0 {
		w.append(&line{
			TS: w.l.opt.clock.Now(), Event: Gap, Result: resultDropped, Count: dropped,
			Detail: fmt.Sprintf("%d records dropped: audit queue full", dropped),
		}, dropped)
	}
	if len(w.buf) == 0 {
		return
	}
	n, err := w.l.w.Write(w.buf)
	if err == nil && n < len(w.buf) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(w.buf))
	}
	if err != nil {
		w.rollback(n, err)
		if w.l.seq != 0 {
			w.l.head.set(w.l.seq, w.l.prev)
		}
	} else {
		w.l.head.set(w.l.seq, w.l.prev)
		if w.failing {
			w.l.opt.log.Info("audit writes recovered")
			w.failing = false
		}
		w.dirty = true
	}
	w.buf, w.lines = w.buf[:0], w.lines[:0]
}

// rollback makes the chain continue from the last line that reached the
// writer whole, and counts the rest as lost.
func (w *batchWriter) rollback(n int, err error) {
	kept := 0
	for kept < len(w.lines) && w.lines[kept].end <= n {
		kept++
	}
	if kept > 0 {
		w.l.seq, w.l.prev = w.lines[kept-1].seq, w.lines[kept-1].hash
	} else {
		w.l.seq, w.l.prev = w.lines[0].seq-1, w.lines[0].prev
	}
	var lost uint64
	for _, ln := range w.lines[kept:] {
		lost += ln.records
	}
	w.lost += lost
	partial := n > 0 && w.buf[n-1] != '\n'
	if partial {
		// End the torn line so the next record starts on its own line;
		// Verify reports the torn one.
		_, _ = w.l.w.Write([]byte{'\n'})
	}
	if !w.failing {
		w.l.opt.log.Error("audit write failed; records are counted in the next gap record",
			"error", err, "records_lost", lost, "torn_line", partial)
		w.failing = true
	}
	w.dirty = w.dirty || n > 0
}

func (w *batchWriter) sync() {
	if w.syncer == nil || !w.dirty {
		return
	}
	if err := w.syncer.Sync(); err != nil {
		w.l.opt.log.Error("audit fsync failed", "error", err)
		return
	}
	w.dirty = false
}
