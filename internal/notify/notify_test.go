package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/credlet/credlet/internal/testlog"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/store"
)

const helperEnv = "CREDLET_NOTIFY_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// The app: wait for SIGUSR1, say so, exit.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGUSR1)
		os.Stdout.WriteString("ready\n")
		select {
		case s := <-c:
			os.Stdout.WriteString("got " + s.String() + "\n")
			os.Exit(0)
		case <-time.After(10 * time.Second):
			os.Stdout.WriteString("no signal\n")
			os.Exit(3)
		}
	}
	os.Exit(m.Run())
}

type syncBuffer = testlog.Buffer

func TestParse(t *testing.T) {
	tests := []struct {
		spec     string
		wantSig  syscall.Signal
		wantComm string
		wantURL  string
		wantErr  bool
	}{
		{spec: "signal:SIGHUP:bot", wantSig: syscall.SIGHUP, wantComm: "bot"},
		{spec: "signal:hup:bot", wantSig: syscall.SIGHUP, wantComm: "bot"},
		{spec: "signal:USR2:trading-bot", wantSig: syscall.SIGUSR2, wantComm: "trading-bot"},
		{spec: "signal:TERM:averyveryverylongprocessname", wantSig: syscall.SIGTERM, wantComm: "averyveryverylo"},
		{spec: "http:http://127.0.0.1:8080/rotated", wantURL: "http://127.0.0.1:8080/rotated"},
		{spec: "http:https://hooks.internal/x", wantURL: "https://hooks.internal/x"},
		{spec: "signal:SIGKILL:bot", wantErr: true},
		{spec: "signal:HUP", wantErr: true},
		{spec: "signal:HUP:", wantErr: true},
		{spec: "signal:HUP:a/b", wantErr: true},
		{spec: "http:ftp://x/", wantErr: true},
		{spec: "http:/relative", wantErr: true},
		{spec: "exec:/bin/true", wantErr: true},
		{spec: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			n, err := Parse(tt.spec, Options{})
			if tt.wantErr {
				if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), "signal:SIGNAL:PROCESS_NAME") || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Parse = %v: want one line naming the allowed forms", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.sig != tt.wantSig || n.comm != tt.wantComm || n.url != tt.wantURL || n.String() != tt.spec {
				t.Fatalf("got sig %v comm %q url %q", n.sig, n.comm, n.url)
			}
		})
	}
}

func newStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.New([]store.Declared{{Name: "acme"}, {Name: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func commit(t *testing.T, st *store.Store, name string, v int) {
	t.Helper()
	commitValue(t, st, name, v, fmt.Sprintf("FAKE-api-key-%d", v))
}

// commitValue commits version v holding value.
func commitValue(t *testing.T, st *store.Store, name string, v int, value string) {
	t.Helper()
	if err := st.Commit(name, store.Meta{Version: v}, map[string][]byte{"api_key": []byte(value)}); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, n *Notifier, st *store.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan struct{})
	n.started = func() { close(started) }
	go func() { done <- n.Run(ctx, st) }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("Run never started")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
}

func TestHTTPHook(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["_method"] = r.Method
		got = append(got, m)
	}))
	defer srv.Close()
	fc := clock.NewFake(time.Unix(0, 0))
	logs := &syncBuffer{}
	n, err := Parse("http:"+srv.URL+"/rotated", Options{Clock: fc, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	commit(t, st, "acme", 1) // there before Run: not news
	run(t, n, st)
	commit(t, st, "other", 1) // a first version: not announced
	armed := fc.TimerCreated()
	commit(t, st, "acme", 2)
	// Two 503s: retried after 1s and then 2s.
	for i, d := range []time.Duration{time.Second, 2 * time.Second} {
		select {
		case <-armed:
		case <-time.After(5 * time.Second):
			t.Fatalf("retry %d never armed", i+1)
		}
		if at, ok := fc.NextDeadline(); !ok || at.Sub(fc.Now()) != d {
			t.Fatalf("retry %d due in %v, want %v", i+1, at.Sub(fc.Now()), d)
		}
		armed = fc.TimerCreated()
		fc.Advance(d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0]["name"] != "acme" || got[0]["version"] != float64(2) || got[0]["_method"] != "POST" || len(got[0]) != 3 {
		t.Fatalf("hook got %v, want one POST {name: acme, version: 2}", got)
	}
	if strings.Contains(logs.String(), "FAKE") {
		t.Fatalf("value in logs: %s", logs.String())
	}
}

// TestRewrapNotAnnounced: a new version with the same values as the one
// before (a Transit rewrap) is not news for the app; the next real change
// is announced with its own version.
func TestRewrapNotAnnounced(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	n, err := Parse("http:"+srv.URL, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	commitValue(t, st, "acme", 1, "FAKE-one")
	run(t, n, st)
	commitValue(t, st, "acme", 2, "FAKE-one") // rewrapped: same plaintext
	// Without the check, version 2 is announced within milliseconds.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	early := append([]string(nil), got...)
	mu.Unlock()
	if len(early) != 0 {
		t.Fatalf("a rewrap was announced: %q", early)
	}
	commitValue(t, st, "acme", 3, "FAKE-two")
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != `{"name":"acme","version":3}` {
		t.Fatalf("hook got %q; want one call for version 3", got)
	}
}

// TestSignalProcess signals a real process found by its /proc comm.
func TestSignalProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "credletntfyapp-with-a-long-name") // comm: "credletntfyapp-"
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("helper did not start: %q", lines.Text())
	}
	n, err := Parse("signal:SIGUSR1:credletntfyapp-with-a-long-name", Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	commit(t, st, "acme", 1)
	run(t, n, st)
	commit(t, st, "acme", 2)
	if !lines.Scan() || lines.Text() != "got user defined signal 1" {
		t.Fatalf("helper said %q", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

func TestSignalNoProcessGivesUp(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	logs := &syncBuffer{}
	n, err := Parse("signal:HUP:nosuchproc-cl", Options{Clock: fc, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	commit(t, st, "acme", 1)
	run(t, n, st)
	armed := fc.TimerCreated()
	commit(t, st, "acme", 2)
	for i := 1; i < maxAttempts; i++ {
		select {
		case <-armed:
		case <-time.After(5 * time.Second):
			t.Fatalf("retry %d never armed", i)
		}
		armed = fc.TimerCreated()
		at, _ := fc.NextDeadline()
		fc.Advance(at.Sub(fc.Now()))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "giving up") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "giving up") || !strings.Contains(logs.String(), "shareProcessNamespace") {
		t.Fatalf("logs:\n%s", logs.String())
	}
	if c := strings.Count(logs.String(), "retrying"); c != maxAttempts-1 {
		t.Fatalf("%d retries logged, want %d", c, maxAttempts-1)
	}
}
