package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// Sentinel errors.
var (
	ErrUnknown  = errors.New("unknown credential set")
	ErrNotReady = errors.New("credential set not fetched yet")
)

// Store holds every credential set the agent serves.
type Store struct {
	order   []string
	entries map[string]*entry // fixed at New: no lock needed to read it

	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

type entry struct {
	optional bool
	current  atomic.Pointer[Set]
	previous atomic.Pointer[Set]

	commitMu sync.Mutex // orders the two pointer swaps of concurrent commits

	mu        sync.Mutex
	changed   chan struct{} // closed on every commit, then replaced
	checkedAt time.Time     // last successful check against the source
	lastErr   string
}

// Declared is a credential set the store will hold.
type Declared struct {
	Name     string
	Optional bool
}

// New makes a store for the given sets. Names must be unique.
func New(sets []Declared) (*Store, error) {
	s := &Store{entries: make(map[string]*entry, len(sets)), subs: map[*Subscription]struct{}{}}
	for _, d := range sets {
		if _, dup := s.entries[d.Name]; dup {
			return nil, fmt.Errorf("store: credential set %q declared twice", d.Name)
		}
		s.entries[d.Name] = &entry{optional: d.Optional, changed: make(chan struct{})}
		s.order = append(s.order, d.Name)
	}
	return s, nil
}

// Names lists the declared sets in declaration order.
func (s *Store) Names() []string { return s.order }

// Optional reports whether readiness ignores the set.
func (s *Store) Optional(name string) bool {
	e := s.entries[name]
	return e != nil && e.optional
}

// Commit publishes a new version of a set. It copies fields into locked
// memory and wipes the caller's slices, whatever the outcome. It is safe for
// concurrent use, though one writer per set (its source) is the design:
// concurrent commits of one set publish in an unspecified order.
func (s *Store) Commit(name string, meta Meta, fields map[string][]byte) error {
	return s.CommitWith(name, meta, fields, nil)
}

// CommitWith is Commit that calls prepared, when not nil, once the version
// is in locked memory and before any reader can see it: what it records
// (metrics) is never behind what a reader is served.
func (s *Store) CommitWith(name string, meta Meta, fields map[string][]byte, prepared func()) error {
	e, ok := s.entries[name]
	if !ok {
		securemem.WipeFields(fields)
		return fmt.Errorf("store: commit %q: %w", name, ErrUnknown)
	}
	set, err := newSet(name, meta, fields)
	if err != nil {
		return fmt.Errorf("store: commit %q: %w", name, err)
	}
	if cur, err := e.acquire(&e.current); err == nil {
		if sameValues(cur, set) {
			set.valuesVersion = cur.valuesVersion
		}
		cur.Release()
	}
	if prepared != nil {
		prepared()
	}
	e.commitMu.Lock()
	old := e.current.Swap(set)
	prev := e.previous.Swap(old)
	e.commitMu.Unlock()
	if prev != nil {
		prev.Release() // the store's reference; freed when the last reader lets go
	}
	e.mu.Lock()
	e.checkedAt = meta.FetchedAt
	e.lastErr = ""
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	s.notify()
	return nil
}

// Acquire returns the current version of a set with a reference the caller
// must Release.
func (s *Store) Acquire(name string) (*Set, error) {
	e, ok := s.entries[name]
	if !ok {
		return nil, ErrUnknown
	}
	return e.acquire(&e.current)
}

// AcquirePrevious returns the version before the current one (the rollback
// pointer), if any.
func (s *Store) AcquirePrevious(name string) (*Set, error) {
	e, ok := s.entries[name]
	if !ok {
		return nil, ErrUnknown
	}
	return e.acquire(&e.previous)
}

func (e *entry) acquire(p *atomic.Pointer[Set]) (*Set, error) {
	for {
		set := p.Load()
		if set == nil {
			return nil, ErrNotReady
		}
		if set.tryRef() {
			return set, nil
		}
		// Freed between Load and tryRef: a newer version has been
		// published; load again.
	}
}

// Wait returns the current version once it differs from notVersion, or
// (nil, ctx.Err()) when ctx ends first. It wakes within a scheduling delay
// of a commit.
func (s *Store) Wait(ctx context.Context, name string, notVersion int) (*Set, error) {
	e, ok := s.entries[name]
	if !ok {
		return nil, ErrUnknown
	}
	for {
		e.mu.Lock()
		ch := e.changed
		e.mu.Unlock()
		set, err := e.acquire(&e.current)
		if err == nil {
			if set.version != notVersion {
				return set, nil
			}
			set.Release()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Status is a set's health, for /v1/health and metrics.
type Status struct {
	Name      string
	Optional  bool
	Version   int       // 0 when never committed
	CreatedAt time.Time // of the served version
	FetchedAt time.Time // of the served version
	CheckedAt time.Time // last successful check against the source
	LastError string    // last failure since then; empty when healthy

	// ValuesVersion is the version that introduced the served values
	// (Set.ValuesVersion); 0 when never committed.
	ValuesVersion int
}

// MarkChecked records a successful check that found no new version.
func (s *Store) MarkChecked(name string, at time.Time) {
	if e, ok := s.entries[name]; ok {
		e.mu.Lock()
		e.checkedAt, e.lastErr = at, ""
		e.mu.Unlock()
	}
}

// MarkError records a failed check or rotation; the served version stays.
// msg must not hold a secret value.
func (s *Store) MarkError(name, msg string) {
	if e, ok := s.entries[name]; ok {
		e.mu.Lock()
		e.lastErr = msg
		e.mu.Unlock()
	}
}

// Status returns every set's status in declaration order.
func (s *Store) Status() []Status {
	out := make([]Status, 0, len(s.order))
	for _, name := range s.order {
		e := s.entries[name]
		st := Status{Name: name, Optional: e.optional}
		if set, err := e.acquire(&e.current); err == nil {
			st.Version, st.ValuesVersion, st.CreatedAt, st.FetchedAt = set.version, set.valuesVersion, set.createdAt, set.fetchedAt
			set.Release()
		}
		e.mu.Lock()
		st.CheckedAt, st.LastError = e.checkedAt, e.lastErr
		e.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// Ready reports whether every non-optional set has been committed once.
func (s *Store) Ready() bool {
	for _, e := range s.entries {
		if !e.optional && e.current.Load() == nil {
			return false
		}
	}
	return true
}

// Close releases every held version. Readers still holding a Set keep it
// valid until they Release it.
func (s *Store) Close() {
	for _, e := range s.entries {
		if set := e.current.Swap(nil); set != nil {
			set.Release()
		}
		if set := e.previous.Swap(nil); set != nil {
			set.Release()
		}
	}
}
