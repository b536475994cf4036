// Package nodebot tests the Node example bot (on @credlet/client in
// sdk/node) against a real agent socket.
package nodebot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/socketapi"
	"github.com/credlet/credlet/internal/store"
)

func node(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is needed to test the Node example")
		}
		t.Skip("no node")
	}
	return p
}

// botDir is bot.mjs beside node_modules/@credlet/client -> sdk/node: what
// `npm install` makes of the package's file: dependency, without npm.
func botDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	src, err := os.ReadFile("bot.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "bot.mjs"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	sdk, err := filepath.Abs(filepath.Join("..", "..", "sdk", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d, "node_modules", "@credlet"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sdk, filepath.Join(d, "node_modules", "@credlet", "client")); err != nil {
		t.Fatal(err)
	}
	return d
}

type agent struct {
	st   *store.Store
	path string
}

func startAgent(t *testing.T, opts socketapi.Options) *agent {
	t.Helper()
	st, err := store.New([]store.Declared{{Name: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	d, err := os.MkdirTemp("", "nb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	opts.Path = filepath.Join(d, "agent.sock")
	srv, err := socketapi.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	for range 1000 {
		if _, err := os.Stat(opts.Path); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &agent{st: st, path: opts.Path}
}

func (a *agent) commit(t *testing.T, v int) {
	t.Helper()
	s := strconv.Itoa(v)
	f := map[string][]byte{"api_key": []byte("FAKE-api-key-v" + s), "api_secret": []byte("FAKE-secret-v" + s)}
	if err := a.st.Commit("acme", store.Meta{Version: v, FetchedAt: time.Now()}, f); err != nil {
		t.Fatal(err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitOut(t *testing.T, out *syncBuf, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the bot's output:\n%s", want, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBotFollowsRotation: the bot signs with version 1, switches to
// version 2 when it is committed, and stops cleanly on SIGTERM.
func TestBotFollowsRotation(t *testing.T) {
	nodeBin := node(t)
	a := startAgent(t, socketapi.Options{})
	a.commit(t, 1)
	out := &syncBuf{}
	cmd := exec.Command(nodeBin, "bot.mjs", "--socket", a.path, "--credential", "acme", "--order-every-ms", "20")
	cmd.Dir = botDir(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitOut(t, out, "using acme version 1 (fields api_key,api_secret)")
	waitOut(t, out, "signed fake order #1 with acme version 1")
	a.commit(t, 2)
	waitOut(t, out, "now using acme version 2 (was 1), no restart")
	waitOut(t, out, "with acme version 2 (signature")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bot after SIGTERM: %v\n%s", err, out)
	}
	if !strings.HasSuffix(out.String(), "nodebot: stopping\n") {
		t.Fatalf("no clean stop:\n%s", out)
	}
	if strings.Contains(out.String(), "FAKE") {
		t.Fatalf("the bot printed a value:\n%s", out)
	}
}

func TestBotErrors(t *testing.T) {
	nodeBin := node(t)
	tests := []struct {
		name string
		opts socketapi.Options
		set  string
		want string
	}{
		{name: "not found", set: "nope", want: `the agent has no credential set "nope"`},
		{name: "forbidden", opts: socketapi.Options{AllowUIDs: []uint32{uint32(os.Getuid()) + 1}}, set: "acme", want: "the agent refuses this process"},
	}
	dir := botDir(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, tt.opts)
			a.commit(t, 1)
			cmd := exec.Command(nodeBin, "bot.mjs", "--socket", a.path, "--credential", tt.set)
			cmd.Dir = dir
			start := time.Now()
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tt.want) {
				t.Fatalf("bot = %v, %q: want exit 1 naming %q", err, out, tt.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("took %v: a permanent error must not be retried", time.Since(start))
			}
		})
	}
}
