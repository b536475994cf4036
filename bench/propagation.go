package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// observer records when it first saw each version of set1.
type observer struct {
	name string
	mu   sync.Mutex
	seen map[int]time.Time
	errs int
}

func newObserver(name string) *observer { return &observer{name: name, seen: map[int]time.Time{}} }

func (o *observer) saw(v int, t time.Time) {
	if v <= 0 {
		return
	}
	o.mu.Lock()
	if _, ok := o.seen[v]; !ok {
		o.seen[v] = t
	}
	o.mu.Unlock()
}

func (o *observer) fail() {
	o.mu.Lock()
	o.errs++
	o.mu.Unlock()
}

func (o *observer) failures() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errs
}

func (o *observer) has(v int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.seen[v]
	return ok
}

func (o *observer) at(v int) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.seen[v]
	return t, ok
}

// rotation is one KV v2 write of set1: the version it made and when the
// write was sent.
type rotation struct {
	version int
	sent    time.Time
}

// watchLongPoll follows set1 on credlet's socket with ?wait= long polls.
func watchLongPoll(ctx context.Context, socket string, from int, o *observer) {
	c := newConn(unixDialer(socket))
	defer c.close()
	cur := from
	for ctx.Err() == nil {
		status, body, err := c.do(getRequest(fmt.Sprintf("/v1/credentials/set1?wait=%d&timeout=5s", cur)))
		now := time.Now()
		switch {
		case err != nil:
			o.fail()
			time.Sleep(10 * time.Millisecond)
		case status == 200:
			if v, err := versionOf(body); err == nil {
				o.saw(v, now)
				cur = v
			}
		case status == 304:
		default:
			o.fail()
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// watchFile follows a delivered file through inotify on its directory (and
// a slow poll in case an event is missed), reading the version each time.
func watchFile(ctx context.Context, dir string, version func() int, o *observer) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	go func() {
		defer w.Close()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.Events:
			case <-w.Errors:
			case <-tick.C:
			}
			o.saw(version(), time.Now())
		}
	}()
	return nil
}

// propagation is what runRotations measured.
type propagation struct {
	rotations []rotation
	observers []*observer
}

// runRotations writes n new versions of set1, each at a random phase
// (0–1.2 s after the last one was seen everywhere), and records when each
// observer saw it.
func runRotations(ctx context.Context, e *env, credlet, va *agentProc, n int) (*propagation, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lp, cf, vf := newObserver("credlet socket long-poll"), newObserver("credlet file"), newObserver("Vault Agent template file")
	cur, _ := e.current()
	go watchLongPoll(ctx, credlet.socket, cur, lp)
	if err := watchFile(ctx, filepath.Join(credlet.files, "set1"), func() int { return credlet.fileVersion("set1") }, cf); err != nil {
		return nil, err
	}
	if err := watchFile(ctx, va.files, func() int { return va.fileVersion("set1") }, vf); err != nil {
		return nil, err
	}
	obs := []*observer{lp, cf, vf}
	res := &propagation{observers: obs}
	time.Sleep(300 * time.Millisecond) // let the watchers settle
	for range n {
		time.Sleep(time.Duration(rand.Int64N(int64(1200 * time.Millisecond))))
		sent := time.Now()
		v, err := e.rotate(ctx, e.sets[0])
		if err != nil {
			return res, err
		}
		res.rotations = append(res.rotations, rotation{version: v, sent: sent})
		waitFor(15*time.Second, 5*time.Millisecond, func() bool {
			for _, o := range obs {
				if !o.has(v) {
					return false
				}
			}
			return true
		})
	}
	return res, nil
}

// delays returns, for observer o, the time from each write to the version
// being visible (missed rotations are left out and counted).
func (p *propagation) delays(o *observer) (d []time.Duration, missed int) {
	for _, r := range p.rotations {
		t, ok := o.at(r.version)
		if !ok {
			missed++
			continue
		}
		d = append(d, t.Sub(r.sent))
	}
	slices.Sort(d)
	return d, missed
}

// overheads returns, per rotation, the time from the poll that found it
// (the agent's first read of pollPath after the write, from Vault's audit
// log) to the version being visible through o: the agent's own latency,
// without the wait for its next poll.
func (p *propagation) overheads(o *observer, polls []time.Time) []time.Duration {
	var out []time.Duration
	for _, r := range p.rotations {
		seen, ok := o.at(r.version)
		if !ok {
			continue
		}
		poll, ok := firstAfter(polls, r.sent)
		if !ok || poll.After(seen) {
			continue
		}
		out = append(out, seen.Sub(poll))
	}
	slices.Sort(out)
	return out
}

// simulateDefault computes the propagation distribution at another poll
// interval from what was measured at nominal: each measured interval is
// scaled by def/nominal (keeping the agent's jitter), a write lands in an
// interval with probability proportional to its length at a uniform phase
// within it, and the measured detection→visible overhead is added.
func simulateDefault(measured []time.Duration, nominal, def time.Duration, overheads []time.Duration, samples int, rng *rand.Rand) []time.Duration {
	if len(measured) == 0 || len(overheads) == 0 {
		return nil
	}
	scale := float64(def) / float64(nominal)
	cum := make([]float64, len(measured))
	total := 0.0
	for i, d := range measured {
		total += float64(d)
		cum[i] = total
	}
	out := make([]time.Duration, samples)
	for i := range out {
		x := rng.Float64() * total
		j, _ := slices.BinarySearch(cum, x)
		j = min(j, len(measured)-1)
		interval := float64(measured[j]) * scale
		wait := time.Duration(rng.Float64() * interval)
		out[i] = wait + overheads[rng.IntN(len(overheads))]
	}
	slices.Sort(out)
	return out
}
