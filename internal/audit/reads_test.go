package audit

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/clock"
)

// readCounts sums the "count" of read records per (uid, pid, credential,
// version); a record without count (a first read) counts 1. It also returns
// how many read records had no count.
func readCounts(t *testing.T, b []byte) (sums map[string]uint64, firsts int) {
	t.Helper()
	sums = map[string]uint64{}
	for _, d := range decodeAll(t, b) {
		if d.Event != Read {
			continue
		}
		if d.Peer == nil {
			t.Fatalf("read record without peer: %+v", d)
		}
		k := fmt.Sprintf("%d/%d/%s/%d", d.Peer.UID, d.Peer.PID, d.Credential, d.Version)
		if d.Count == 0 {
			firsts++
			sums[k]++
		} else {
			sums[k] += d.Count
		}
	}
	return sums, firsts
}

func TestReadSummary(t *testing.T) {
	var buf syncBuffer
	fc := clock.NewFake(t0)
	l := New(&buf, Options{Clock: fc})
	stop := start(t, l)
	waitTimers(t, fc, 1)

	bot := Peer{UID: 1000, GID: 1001, PID: 77}
	const reads = 10_000
	for range reads {
		l.ObserveRead(bot, "zerodha", 3)
	}
	waitFor(t, "first-read record", func() bool { return len(buf.Bytes()) > 0 })
	got := decodeAll(t, buf.Bytes())
	if len(got) != 1 || got[0].Count != 0 || *got[0].Peer != bot || got[0].Version != 3 {
		t.Fatalf("before the minute: %+v; want just the first read, with its peer", got)
	}

	fc.Advance(59 * time.Second)
	l.Log(Record{Event: Renew, Result: "ok"}) // a marker: Run has caught up once it is written
	waitFor(t, "marker", func() bool { return bytes.Contains(buf.Bytes(), []byte(`"renew"`)) })
	if n := len(decodeAll(t, buf.Bytes())); n != 2 {
		t.Fatalf("%d lines before a minute passed; want first read + marker, no summary", n)
	}

	fc.Advance(time.Second)
	waitFor(t, "summary", func() bool { return bytes.Count(buf.Bytes(), []byte("\n")) == 3 })
	sum := decodeAll(t, buf.Bytes())[2]
	if sum.Event != Read || sum.Count != reads-1 || *sum.Peer != bot || sum.Credential != "zerodha" {
		t.Fatalf("summary = %+v; want count %d for the bot", sum, reads-1)
	}
	if sum.TS != "2026-03-01T12:01:00.000000000Z" {
		t.Errorf("summary ts %s; want the minute it was written", sum.TS)
	}

	// A quiet minute writes nothing; reads in the next are summarised, and
	// the rest flushed on shutdown.
	waitTimers(t, fc, 1)
	fc.Advance(time.Minute)
	waitTimers(t, fc, 1) // re-armed: the quiet sweep is done
	other := Peer{UID: 1000, GID: 1001, PID: 78}
	for range 5 {
		l.ObserveRead(bot, "zerodha", 3)
		l.ObserveRead(bot, "zerodha", 4) // new version: first read again
		l.ObserveRead(other, "zerodha", 3)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if _, err := Verify(bytes.NewReader(out)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	sums, firsts := readCounts(t, out)
	want := map[string]uint64{"1000/77/zerodha/3": reads + 5, "1000/77/zerodha/4": 5, "1000/78/zerodha/3": 5}
	if fmt.Sprint(sums) != fmt.Sprint(want) || firsts != 3 {
		t.Fatalf("read counts %v with %d first reads; want %v with 3\n%s", sums, firsts, want, out)
	}
	if lines := bytes.Count(out, []byte("\n")); lines != 3+2+3 {
		t.Errorf("%d lines; want 3 so far + 2 first reads (v4, pid 78) + 3 shutdown summaries\n%s", lines, out)
	}
}

// TestReadTrackerForgetsIdleKeys: idle keys are dropped after idleSweeps
// empty sweeps and their next read is recorded on its own.
func TestReadTrackerForgetsIdleKeys(t *testing.T) {
	p := Peer{UID: 1, PID: 2}
	var tr readTracker
	tr.init(10)
	if !tr.observe(p, "c", 1) || tr.observe(p, "c", 1) {
		t.Fatal("first observe must record, the second must not")
	}
	if s := tr.sweep(nil); len(s) != 1 || s[0].count != 1 {
		t.Fatalf("first sweep = %+v; want the one repeat", s)
	}
	for i := range idleSweeps {
		if tr.size.Load() != 1 {
			t.Fatalf("key dropped after %d idle sweeps; want %d", i, idleSweeps)
		}
		tr.sweep(nil)
	}
	if tr.size.Load() != 0 {
		t.Fatalf("size %d after %d idle sweeps; want 0", tr.size.Load(), idleSweeps)
	}
	if !tr.observe(p, "c", 1) {
		t.Fatal("a forgotten key's next read must be recorded")
	}
}

func TestReadTrackerFull(t *testing.T) {
	var tr readTracker
	tr.init(2)
	for pid := range int32(5) {
		if !tr.observe(Peer{PID: pid}, "c", 1) {
			t.Fatalf("pid %d: first read not recorded", pid)
		}
	}
	if tr.size.Load() != 2 {
		t.Fatalf("tracked %d keys; want the cap, 2", tr.size.Load())
	}
	// Keys beyond the cap are recorded every time; tracked ones are counted.
	if !tr.observe(Peer{PID: 4}, "c", 1) || tr.observe(Peer{PID: 0}, "c", 1) {
		t.Fatal("untracked key must record each read, tracked key must not")
	}
}

// TestReadTrackerConcurrent races readers against sweeps that count, kill
// and drop keys, and checks that no read is lost or counted twice.
func TestReadTrackerConcurrent(t *testing.T) {
	var tr readTracker
	tr.init(1 << 10)
	var recorded, swept atomic.Uint64
	stopSweep := make(chan struct{})
	var sweeper sync.WaitGroup
	sweeper.Go(func() {
		for {
			select {
			case <-stopSweep:
				return
			default:
			}
			for _, s := range tr.sweep(nil) {
				swept.Add(s.count)
			}
		}
	})
	const readers, each = 8, 20_000
	var wg sync.WaitGroup
	for g := range readers {
		wg.Go(func() {
			for i := range each {
				// Few hot keys and many cold ones, so keys go idle and die.
				p := Peer{UID: uint32(g % 2), PID: int32(i % 7)}
				if i%100 == 0 {
					p.PID = int32(1000 + i)
				}
				if tr.observe(p, "c", i%3) {
					recorded.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stopSweep)
	sweeper.Wait()
	for _, s := range tr.sweep(nil) {
		swept.Add(s.count)
	}
	if total := recorded.Load() + swept.Load(); total != readers*each {
		t.Fatalf("%d recorded + %d summarised = %d; want %d reads", recorded.Load(), swept.Load(), total, readers*each)
	}
}

// BenchmarkObserveRead is the socket hot path: a key already tracked.
func BenchmarkObserveRead(b *testing.B) {
	l := New(&syncBuffer{})
	p := Peer{UID: 1000, GID: 1000, PID: 42}
	l.ObserveRead(p, "zerodha", 3)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l.ObserveRead(p, "zerodha", 3)
	}
}

// BenchmarkObserveReadParallel: every core reading, one key per goroutine
// (a bot with several processes).
func BenchmarkObserveReadParallel(b *testing.B) {
	l := New(&syncBuffer{})
	var next atomic.Int32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := Peer{UID: 1000, GID: 1000, PID: next.Add(1)}
		for pb.Next() {
			l.ObserveRead(p, "zerodha", 3)
		}
	})
}

// BenchmarkObserveReadSameKeyParallel: every core reading the same key.
func BenchmarkObserveReadSameKeyParallel(b *testing.B) {
	l := New(&syncBuffer{})
	p := Peer{UID: 1000, GID: 1000, PID: 42}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.ObserveRead(p, "zerodha", 3)
		}
	})
}
