// Package sockagent runs the agent's socket API inside a test's own
// process, over a store the test commits versions to: the real server the
// Go client, the SDK examples and the example bots talk to when Vault is
// not what the test is about.
package sockagent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/socketapi"
	"github.com/credlet/credlet/internal/store"
)

// Agent is a socket server on a store. Stop and Start take it down and up
// again on the same path, as an agent restart would.
type Agent struct {
	Store *store.Store
	Path  string // the socket

	t      testing.TB
	opts   socketapi.Options
	cancel context.CancelFunc
	done   chan error
}

// Start declares sets in a new store and serves it on a socket in a fresh
// short directory (opts.Path is set). Everything stops at the test's end.
func Start(t testing.TB, sets []string, opts socketapi.Options) *Agent {
	t.Helper()
	decl := make([]store.Declared, len(sets))
	for i, name := range sets {
		decl[i] = store.Declared{Name: name}
	}
	st, err := store.New(decl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	// Under /tmp, not t.TempDir: a socket address holds 107 bytes.
	d, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	opts.Path = filepath.Join(d, "agent.sock")
	a := &Agent{Store: st, Path: opts.Path, t: t, opts: opts}
	a.Start()
	t.Cleanup(a.Stop)
	return a
}

// Start serves the store again after Stop and returns once the socket
// accepts connections. It may run on another goroutine than the test's.
func (a *Agent) Start() {
	a.t.Helper()
	srv, err := socketapi.New(a.Store, a.opts)
	if err != nil {
		a.t.Error(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan error, 1)
	go func() { a.done <- srv.Run(ctx) }()
	for range 2000 {
		if c, err := net.Dial("unix", a.Path); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.t.Error("the socket never came up")
}

// Stop shuts the server down (the socket file goes with it); Run's error,
// if any, fails the test.
func (a *Agent) Stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	if err := <-a.done; err != nil {
		a.t.Errorf("socket server: %v", err)
	}
}

// Commit makes fields the current version of set.
func (a *Agent) Commit(set string, meta store.Meta, fields map[string][]byte) {
	a.t.Helper()
	if err := a.Store.Commit(set, meta, fields); err != nil {
		a.t.Fatal(err)
	}
}
