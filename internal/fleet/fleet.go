package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
)

// Agent is one simulated agent.
type Agent struct {
	Name  string
	Creds []credspec.Credential // at least one; names unique within the agent
	// Login logs the agent in (its lease manager keeps the token alive);
	// nil: Token is used as is.
	Login auth.Method
	Token string
}

// Options configures a Fleet.
type Options struct {
	Addr    string        // Vault address
	Refresh time.Duration // every source's poll interval; 0: the agent's default
	Timeout time.Duration // per request; 0: vault.DefaultTimeout
	// Stagger spreads the agents' starts evenly over this long (agent i
	// starts at i×Stagger/len), as a fleet whose pods started at different
	// times; 0: all at once.
	Stagger time.Duration
}

// Fleet is a set of simulated agents. Create it with New, run it with Run.
type Fleet struct {
	o       Options
	agents  []*agent
	metrics *metrics.Agent

	mu        sync.Mutex
	committed map[setKey]map[int]time.Time // when the store first served each version
}

type setKey struct{ agent, set string }

type agent struct {
	spec   Agent
	client *api.Client
	st     *store.Store
	tokens *lease.Manager // nil with a fixed token
	srcs   []*source.Vault
}

// New builds the agents' clients, stores and sources; nothing runs yet.
func New(agents []Agent, o Options) (*Fleet, error) {
	f := &Fleet{o: o, metrics: metrics.New(), committed: map[setKey]map[int]time.Time{}}
	for _, spec := range agents {
		if len(spec.Creds) == 0 {
			return nil, fmt.Errorf("fleet agent %s: no credential", spec.Name)
		}
		c, err := vault.NewClient(vault.ClientConfig{Addr: o.Addr, Timeout: o.Timeout, Metrics: f.metrics})
		if err != nil {
			return nil, fmt.Errorf("fleet agent %s: %w", spec.Name, err)
		}
		decl := make([]store.Declared, 0, len(spec.Creds))
		for _, cr := range spec.Creds {
			decl = append(decl, store.Declared{Name: cr.Name})
		}
		st, err := store.New(decl)
		if err != nil {
			return nil, fmt.Errorf("fleet agent %s: %w", spec.Name, err)
		}
		a := &agent{spec: spec, client: c, st: st}
		so := source.Options{Refresh: o.Refresh, Metrics: f.metrics}
		if spec.Login != nil {
			a.tokens = lease.New(c, spec.Login, lease.Options{Metrics: f.metrics})
			so.Tokens = a.tokens
		} else {
			c.SetToken(spec.Token)
		}
		for _, cr := range spec.Creds {
			a.srcs = append(a.srcs, source.NewVault(c, cr, st, so))
		}
		f.agents = append(f.agents, a)
	}
	return f, nil
}

// Run runs every agent until ctx ends, then returns nil once every
// goroutine it started has ended.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	start := time.Now()
	for i, a := range f.agents {
		var delay time.Duration
		if f.o.Stagger > 0 {
			delay = time.Duration(int64(f.o.Stagger) * int64(i) / int64(len(f.agents)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := time.Until(start.Add(delay)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			f.runAgent(ctx, a)
		}()
	}
	wg.Wait()
	for _, a := range f.agents {
		a.st.Close()
	}
	return nil
}

func (f *Fleet) runAgent(ctx context.Context, a *agent) {
	var wg sync.WaitGroup
	if a.tokens != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.tokens.Run(ctx) }()
	}
	for i, src := range a.srcs {
		name := a.spec.Creds[i].Name
		wg.Add(2)
		go func() { defer wg.Done(); _ = src.Run(ctx) }()
		go func() { defer wg.Done(); f.watch(ctx, a, name) }()
	}
	wg.Wait()
}

// watch records when a's store first serves each version of set.
func (f *Fleet) watch(ctx context.Context, a *agent, set string) {
	seen := 0
	k := setKey{a.spec.Name, set}
	for {
		s, err := a.st.Wait(ctx, set, seen)
		if err != nil {
			return
		}
		seen = s.Version()
		s.Release()
		now := time.Now()
		f.mu.Lock()
		if f.committed[k] == nil {
			f.committed[k] = map[int]time.Time{}
		}
		if _, ok := f.committed[k][seen]; !ok {
			f.committed[k][seen] = now
		}
		f.mu.Unlock()
	}
}

// CommittedAt returns when agent's store first served version v of set.
func (f *Fleet) CommittedAt(agent, set string, v int) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.committed[setKey{agent, set}][v]
	return at, ok
}

// Sets calls fn for every set of every agent, in order.
func (f *Fleet) Sets(fn func(agent, set string)) {
	for _, a := range f.agents {
		for _, c := range a.spec.Creds {
			fn(a.spec.Name, c.Name)
		}
	}
}

// ErrNotServed is wrapped by WaitVersion when ctx ends first.
var ErrNotServed = errors.New("version not served")

// WaitVersion waits until every set of every agent has served version v
// (polling every 10 ms), or ctx ends.
func (f *Fleet) WaitVersion(ctx context.Context, v int) error {
	var missing setKey
	for {
		all := true
		f.mu.Lock()
		for _, a := range f.agents {
			for _, c := range a.spec.Creds {
				if _, ok := f.committed[setKey{a.spec.Name, c.Name}][v]; !ok {
					all, missing = false, setKey{a.spec.Name, c.Name}
					break
				}
			}
			if !all {
				break
			}
		}
		f.mu.Unlock()
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s/%s never served version %d: %w", ErrNotServed, missing.agent, missing.set, v, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Check returns an error unless every set of every agent currently serves
// version v with field equal to want(agent, set, v).
func (f *Fleet) Check(field string, v int, want func(agent, set string, v int) []byte) error {
	for _, a := range f.agents {
		for _, c := range a.spec.Creds {
			s, err := a.st.Acquire(c.Name)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", a.spec.Name, c.Name, err)
			}
			val, _ := s.Field(field)
			got := s.Version()
			ok := got == v && bytes.Equal(val, want(a.spec.Name, c.Name, v))
			s.Release()
			if !ok {
				return fmt.Errorf("%s/%s serves version %d, want the last good version %d with its %s", a.spec.Name, c.Name, got, v, field)
			}
		}
	}
	return nil
}
