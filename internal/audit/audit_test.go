package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/credlet/credlet/internal/testlog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/clock"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type syncBuffer = testlog.Buffer

// start runs l until the returned stop is called (or the test ends); stop
// returns Run's result.
func start(t *testing.T, l *Logger) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// contextCanceled returns a context that is already done: Run then writes
// what is queued and returns.
func contextCanceled() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx, cancel
}

// waitFor polls cond for up to 5s: for output the writer goroutine produces.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitTimers waits until the fake clock has n pending timers.
func waitTimers(t *testing.T, fc *clock.Fake, n int) {
	t.Helper()
	waitFor(t, "timers to be armed", func() bool { return fc.Pending() >= n })
}

// decoded is a written line as a generic record, for assertions.
type decoded struct {
	TS         string `json:"ts"`
	Seq        uint64 `json:"seq"`
	Event      Event  `json:"event"`
	Credential string `json:"credential"`
	Version    int    `json:"version"`
	Peer       *Peer  `json:"peer"`
	Result     string `json:"result"`
	Count      uint64 `json:"count"`
	Detail     string `json:"detail"`
	Prev       string `json:"prev"`
	Hash       string `json:"hash"`
}

func decodeAll(t *testing.T, b []byte) []decoded {
	t.Helper()
	var out []decoded
	for _, ln := range bytes.SplitAfter(b, []byte("\n")) {
		if len(ln) == 0 {
			continue
		}
		var d decoded
		if err := json.Unmarshal(ln, &d); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", len(out)+1, err, ln)
		}
		out = append(out, d)
	}
	return out
}

func TestChainVerifies(t *testing.T) {
	var buf syncBuffer
	fc := clock.NewFake(t0)
	l := New(&buf, Options{Clock: fc})
	stop := start(t, l)
	peer := &Peer{UID: 1000, GID: 1000, PID: 4242}
	recs := []Record{
		{Event: Login, Result: "ok", Detail: "method=kubernetes role=bot"},
		{Event: Renew, Result: "ok"},
		{Event: Fetch, Credential: "zerodha", Version: 3, Result: "ok"},
		{Event: Decrypt, Credential: "zerodha", Version: 3, Result: "error", Detail: "transit: \"bad\"\n\t\x01\x7f <&> \u2028 é"},
		{Event: Commit, Credential: "zerodha", Version: 3, Result: "ok"},
		{Event: Deny, Peer: peer, Result: "denied", Detail: "uid 1000 not in allow list"},
		{Event: VerifyEvent, Credential: "zerodha", Version: 4, Result: "failed"},
	}
	for i, r := range recs {
		l.Log(r)
		if r.Peer != nil {
			r.Peer.PID = 1 // the logger copied the peer: reusing it changes nothing
		}
		fc.Advance(time.Duration(i) * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := buf.Bytes()
	n, err := Verify(bytes.NewReader(out))
	if err != nil || n != len(recs) {
		t.Fatalf("Verify = %d, %v; want %d, nil\n%s", n, err, len(recs), out)
	}
	got := decodeAll(t, out)
	for i, d := range got {
		r := recs[i]
		if d.Seq != uint64(i+1) || d.Event != r.Event || d.Credential != r.Credential || d.Version != r.Version || d.Result != r.Result {
			t.Errorf("line %d = %+v; want seq %d and %+v", i+1, d, i+1, r)
		}
		if i > 0 && d.Prev != got[i-1].Hash {
			t.Errorf("line %d prev %q, want line %d hash %q", i+1, d.Prev, i, got[i-1].Hash)
		}
	}
	if got[0].Prev != "" || got[0].TS != "2026-03-01T12:00:00.000000000Z" {
		t.Errorf("first line prev %q ts %q", got[0].Prev, got[0].TS)
	}
	if got[5].Peer == nil || *got[5].Peer != (Peer{UID: 1000, GID: 1000, PID: 4242}) {
		t.Errorf("deny peer = %+v; want the peer as logged", got[5].Peer)
	}
	if got[3].Detail != recs[3].Detail {
		t.Errorf("detail round trip = %q; want %q", got[3].Detail, recs[3].Detail)
	}
}

func TestDetailClipped(t *testing.T) {
	var buf syncBuffer
	l := New(&buf)
	stop := start(t, l)
	l.Log(Record{Event: Fetch, Result: "error", Detail: strings.Repeat("é", 2000)})
	_ = stop()
	got := decodeAll(t, buf.Bytes())
	if len(got) != 1 || len(got[0].Detail) > maxDetail || !strings.HasSuffix(got[0].Detail, "...") {
		t.Fatalf("detail of %d bytes, want at most %d ending in ...", len(got[0].Detail), maxDetail)
	}
	if n, err := Verify(bytes.NewReader(buf.Bytes())); err != nil || n != 1 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

func TestGapOnOverflow(t *testing.T) {
	var buf syncBuffer
	l := New(&buf, Options{QueueSize: 2})
	// Run is not draining yet: two fit, the rest are dropped.
	for i := range 100 {
		l.Log(Record{Event: Fetch, Credential: "c", Version: i + 1, Result: "ok"})
	}
	stop := start(t, l)
	waitFor(t, "gap record", func() bool { return bytes.Contains(buf.Bytes(), []byte(`"event":"gap"`)) })
	l.Log(Record{Event: Commit, Credential: "c", Version: 2, Result: "ok"})
	_ = stop()
	out := buf.Bytes()
	n, err := Verify(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("Verify: %v\n%s", err, out)
	}
	got := decodeAll(t, out)
	if n != 4 || len(got) != 4 {
		t.Fatalf("%d records; want 2 kept + gap + commit\n%s", n, out)
	}
	if got[0].Version != 1 || got[1].Version != 2 {
		t.Errorf("kept versions %d, %d; want the first two logged", got[0].Version, got[1].Version)
	}
	if g := got[2]; g.Event != Gap || g.Count != 98 || g.Result != "dropped" {
		t.Errorf("gap record = %+v; want event gap, count 98", g)
	}
	if got[3].Event != Commit {
		t.Errorf("last = %+v; want the commit logged after the gap", got[3])
	}
}

func TestLogConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		queue int
	}{{"roomy queue", 1 << 14}, {"tiny queue", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuffer
			l := New(&buf, Options{QueueSize: tc.queue})
			stop := start(t, l)
			const goroutines, each = 16, 500
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					p := Peer{UID: uint32(g), PID: int32(g)}
					for i := range each {
						l.Log(Record{Event: Read, Credential: "c", Version: i, Peer: &p, Result: "ok"})
					}
				})
			}
			wg.Wait()
			_ = stop()
			out := buf.Bytes()
			n, err := Verify(bytes.NewReader(out))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			var records, lost uint64
			for _, d := range decodeAll(t, out) {
				if d.Event == Gap {
					lost += d.Count
				} else {
					records++
				}
			}
			if records+lost != goroutines*each {
				t.Fatalf("%d written + %d in gap records = %d; want %d logged (%d lines)", records, lost, records+lost, goroutines*each, n)
			}
			if tc.queue > goroutines*each && lost != 0 {
				t.Errorf("%d lost with a queue larger than all records", lost)
			}
		})
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Log(Record{Event: Login})
	l.ObserveRead(Peer{}, "c", 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatalf("nil Run = %v", err)
	}
}

func TestRunTwice(t *testing.T) {
	l := New(&syncBuffer{})
	start(t, l)
	waitFor(t, "first Run", l.running.Load)
	if err := l.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v; want ErrRunning", err)
	}
}

// flakyWriter fails the writes it is told to and records the rest.
type flakyWriter struct {
	syncBuffer
	mu      sync.Mutex
	fail    int // fail this many more writes
	partial int // on failure, write this many bytes first
	syncs   int
}

func (f *flakyWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	fail, partial := f.fail > 0, f.partial
	if fail {
		f.fail--
	}
	f.mu.Unlock()
	if fail {
		n := min(partial, len(p))
		_, _ = f.syncBuffer.Write(p[:n])
		return n, errors.New("disk full")
	}
	return f.syncBuffer.Write(p)
}

func (f *flakyWriter) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	return nil
}

func (f *flakyWriter) syncCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

func TestWriteFailureBecomesGap(t *testing.T) {
	w := &flakyWriter{}
	l := New(w)
	stop := start(t, l)
	l.Log(Record{Event: Login, Result: "ok"})
	waitFor(t, "first record", func() bool { return len(w.Bytes()) > 0 })
	w.mu.Lock()
	w.fail = 2
	w.mu.Unlock()
	// Each Log becomes its own batch once the writer has caught up.
	for i := range 2 {
		l.Log(Record{Event: Renew, Result: "ok"})
		waitFor(t, "failed write", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.fail == 1-i
		})
	}
	l.Log(Record{Event: Commit, Credential: "c", Version: 1, Result: "ok"})
	_ = stop()
	out := w.Bytes()
	if _, err := Verify(bytes.NewReader(out)); err != nil {
		t.Fatalf("Verify after failed writes: %v\n%s", err, out)
	}
	got := decodeAll(t, out)
	// The second failure carried the first one's gap record: 2 renewals lost.
	var lost uint64
	for _, d := range got {
		if d.Event == Gap {
			lost += d.Count
		}
	}
	if lost != 2 || got[len(got)-1].Event != Commit {
		t.Fatalf("lost %d in gap records, last %q; want 2 and commit\n%s", lost, got[len(got)-1].Event, out)
	}
}

func TestTornWriteIsReported(t *testing.T) {
	w := &flakyWriter{fail: 1, partial: 10}
	l := New(w)
	l.Log(Record{Event: Login, Result: "ok"})
	stop := start(t, l)
	waitFor(t, "failed write", func() bool { return len(w.Bytes()) > 0 })
	l.Log(Record{Event: Renew, Result: "ok"})
	_ = stop()
	// Line 1 is the torn write, ended by the logger; the chain goes on after it.
	out := w.Bytes()
	_, err := Verify(bytes.NewReader(out))
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Line != 1 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Verify = %v; want malformed line 1\n%s", err, out)
	}
	rest := out[bytes.IndexByte(out, '\n')+1:]
	if n, err := Verify(bytes.NewReader(rest)); err != nil || n != 2 {
		t.Fatalf("after the torn line: Verify = %d, %v; want gap + renew\n%s", n, err, rest)
	}
}

func TestSyncPeriodicAndOnShutdown(t *testing.T) {
	w := &flakyWriter{}
	fc := clock.NewFake(t0)
	l := New(w, Options{Clock: fc, SyncInterval: time.Second})
	stop := start(t, l)
	waitTimers(t, fc, 1) // summary timer
	l.Log(Record{Event: Login, Result: "ok"})
	waitTimers(t, fc, 2) // the sync timer is armed after a write
	if w.syncCount() != 0 {
		t.Fatalf("synced before the interval")
	}
	fc.Advance(time.Second)
	waitFor(t, "periodic fsync", func() bool { return w.syncCount() == 1 })
	l.Log(Record{Event: Renew, Result: "ok"})
	waitFor(t, "second write", func() bool { return bytes.Count(w.Bytes(), []byte("\n")) == 2 })
	_ = stop()
	if w.syncCount() != 2 {
		t.Fatalf("%d syncs; want 1 periodic + 1 on shutdown", w.syncCount())
	}
}
