// Package pythonbot tests the Python example bot (on the credlet package in
// sdk/python) against a real agent socket.
package pythonbot

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/socketapi"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/testenv/sockagent"
)

func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is needed to test the Python example")
		}
		t.Skip("no python3")
	}
	return p
}

// pyCmd runs python3 with the credlet package from sdk/python, without
// writing __pycache__ into the source tree.
func pyCmd(py string, args ...string) *exec.Cmd {
	cmd := exec.Command(py, args...)
	sdk, _ := filepath.Abs(filepath.Join("..", "..", "sdk", "python"))
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONPATH="+sdk)
	return cmd
}

type agent struct{ *sockagent.Agent }

func startAgent(t *testing.T, opts socketapi.Options) agent {
	return agent{sockagent.Start(t, []string{"acme", "pending"}, opts)}
}

func (a agent) commit(v int) {
	s := strconv.Itoa(v)
	a.Commit("acme", store.Meta{Version: v},
		map[string][]byte{"api_key": []byte("FAKE-api-key-v" + s), "api_secret": []byte("FAKE-secret-\"é\"\n-v" + s)})
}

func TestBotWatchesRotations(t *testing.T) {
	py := python(t)
	a := startAgent(t, socketapi.Options{})
	a.commit(1)
	cmd := pyCmd(py, "bot.py", "--socket", a.Path, "--name", "acme", "--versions", "3", "--wait-timeout", "2")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	var got []string
	for v := 1; v <= 3; v++ {
		if !lines.Scan() {
			t.Fatalf("bot stopped after %v; stderr:\n%s", got, stderr.String())
		}
		got = append(got, lines.Text())
		if !strings.HasPrefix(lines.Text(), fmt.Sprintf("version %d fields api_key,api_secret fingerprint ", v)) {
			t.Fatalf("line %q, want version %d", lines.Text(), v)
		}
		if v < 3 {
			time.Sleep(50 * time.Millisecond) // let the bot park its long poll
			a.commit(v+1)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bot: %v\n%s", err, stderr.String())
	}
	if got[0][len(got[0])-12:] == got[1][len(got[1])-12:] {
		t.Fatal("fingerprint did not change with the rotation")
	}
	if strings.Contains(strings.Join(got, "\n")+stderr.String(), "FAKE") {
		t.Fatal("the bot printed a value")
	}
}

func TestBotErrors(t *testing.T) {
	py := python(t)
	tests := []struct {
		name string
		opts socketapi.Options
		set  string
		want string
	}{
		{name: "not found", set: "nope", want: "404 not_found"},
		{name: "forbidden", opts: socketapi.Options{AllowUIDs: []uint32{54321}}, set: "acme", want: "403 forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, tt.opts)
			a.commit(1)
			out, err := pyCmd(py, "bot.py", "--socket", a.Path, "--name", tt.set, "--once").CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("bot --once = %v, %q: want failure naming %q", err, out, tt.want)
			}
		})
	}
	t.Run("not ready is retried", func(t *testing.T) {
		a := startAgent(t, socketapi.Options{})
		start := time.Now()
		out, err := pyCmd(py, "bot.py", "--socket", a.Path, "--name", "pending", "--once").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "503 not_ready") || time.Since(start) < 500*time.Millisecond {
			t.Fatalf("bot --once on a pending set = %v after %v, %q: want not_ready after retries", err, time.Since(start), out)
		}
	})
	t.Run("no agent", func(t *testing.T) {
		out, err := pyCmd(py, "bot.py", "--socket", "/nonexistent/agent.sock", "--name", "acme", "--once").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "0 unavailable") || !strings.Contains(string(out), "/nonexistent/agent.sock") {
			t.Fatalf("bot without an agent = %v, %q", err, out)
		}
	})
}

func TestCredentialRepr(t *testing.T) {
	py := python(t)
	out, err := pyCmd(py, "-c", `
from credlet import Credential
c = Credential("acme", 3, {"api_key": "FAKE-api-key-123", "b": "FAKE-b"})
print(repr(c)); print(str(c)); print("%s %r" % (c, c)); print([c])
`).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(string(out), "FAKE") || !strings.Contains(string(out), "[REDACTED]") || !strings.Contains(string(out), "version=3") {
		t.Fatalf("repr leaks or lacks detail:\n%s", out)
	}
}
