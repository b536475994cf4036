// Package nodebot tests the Node example bot (on @credlet/client in
// sdk/node) against a real agent socket.
package nodebot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/socketapi"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/testenv/sockagent"
	"github.com/credlet/credlet/internal/testlog"
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

type agent struct{ *sockagent.Agent }

func startAgent(t *testing.T, opts socketapi.Options) agent {
	return agent{sockagent.Start(t, []string{"acme"}, opts)}
}

func (a agent) commit(v int) {
	s := strconv.Itoa(v)
	a.Commit("acme", store.Meta{Version: v, FetchedAt: time.Now()},
		map[string][]byte{"api_key": []byte("FAKE-api-key-v" + s), "api_secret": []byte("FAKE-secret-v" + s)})
}

func waitOut(t *testing.T, out *testlog.Buffer, want string) {
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
	a.commit(1)
	out := &testlog.Buffer{}
	cmd := exec.Command(nodeBin, "bot.mjs", "--socket", a.Path, "--credential", "acme", "--order-every-ms", "20")
	cmd.Dir = botDir(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitOut(t, out, "using acme version 1 (fields api_key,api_secret)")
	waitOut(t, out, "signed fake order #1 with acme version 1")
	a.commit(2)
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
			a.commit(1)
			cmd := exec.Command(nodeBin, "bot.mjs", "--socket", a.Path, "--credential", tt.set)
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
