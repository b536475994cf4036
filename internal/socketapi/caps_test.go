package socketapi

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/testenv/refusedpeer"
)

// TestConnectionCaps: past the per-UID cap a new connection is answered
// 503 busy with the reason and closed; once a connection ends, a new one
// is served again.
func TestConnectionCaps(t *testing.T) {
	e := startEnv(t, func(o *Options) { o.MaxConnsPerUID = 3 })
	commitV(t, e.st, "acme", 1)
	time.Sleep(50 * time.Millisecond) // startEnv's probe connection has ended
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("unix", e.path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond) // accepted
	get := "GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\n\r\n"
	rs := rawExchange(t, e.path, get, false)
	if got := statuses(rs); got != "503+close" {
		t.Fatalf("past the cap: answers %q, want 503+close", got)
	}
	held[0].Close()
	time.Sleep(50 * time.Millisecond)
	if got := statuses(rawExchange(t, e.path, get, true)); got != "200" {
		t.Fatalf("after one closed: answers %q, want 200", got)
	}
	// The goroutines do not grow with refused attempts.
	before := runtime.NumGoroutine()
	for range 100 {
		c, err := net.Dial("unix", e.path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > before+maxTurningAway+5 {
		t.Errorf("%d goroutines with 100 connections past the cap (%d before)", n, before)
	}
}

// TestConnectionCapBody: the busy answer says why, in the API's error form.
func TestConnectionCapBody(t *testing.T) {
	e := startEnv(t, func(o *Options) { o.MaxConns = 1 })
	time.Sleep(50 * time.Millisecond)
	c, err := net.Dial("unix", e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	a := do(t, unixClient(e.path), "GET", "/v1/health", nil, nil)
	if a.status != 503 || errCode(t, a.body) != "busy" || !strings.Contains(a.body, "too many connections") || !a.close {
		t.Fatalf("got %d %s (close %v)", a.status, a.body, a.close)
	}
}

// TestLongPollCap: past MaxLongPolls a long poll is answered 503 busy at
// once; plain reads are still served.
func TestLongPollCap(t *testing.T) {
	e := startEnv(t, func(o *Options) { o.MaxLongPolls = 2 })
	commitV(t, e.st, "acme", 1)
	for range 2 {
		c, err := net.Dial("unix", e.path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /v1/credentials/acme?wait=1&timeout=1m HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // both parked
	cl := unixClient(e.path)
	start := time.Now()
	a := do(t, cl, "GET", "/v1/credentials/acme?wait=1&timeout=1m", nil, nil)
	if a.status != 503 || errCode(t, a.body) != "busy" || time.Since(start) > 2*time.Second {
		t.Fatalf("third long poll: %d %s after %v", a.status, a.body, time.Since(start))
	}
	if a := do(t, cl, "GET", "/v1/credentials/acme", nil, nil); a.status != 200 {
		t.Fatalf("plain read past the long-poll cap: %d %s", a.status, a.body)
	}
}

// TestAcceptBackoffEndsWithContext: out of descriptors, the accept loop
// backs off (up to 1s); cancelling Run does not wait for the back-off.
func TestAcceptBackoffEndsWithContext(t *testing.T) {
	e := startEnv(t, nil)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Room for a few connections only: the rest leave accept failing
	// with EMFILE, and its back-off grows to a second.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	n, _ := refusedpeer.Stats(t, 0)
	low := lim
	low.Cur = uint64(n + 8)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
		}
	}
	defer restore()
	for range 6 {
		c, err := net.Dial("unix", e.path)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	time.Sleep(1500 * time.Millisecond)
	if !strings.Contains(e.logs.String(), `"retry_in":"1s"`) && !strings.Contains(e.logs.String(), `"retry_in":"640ms"`) {
		t.Fatalf("accept never backed off long:\n%.3000s", e.logs.String())
	}
	// Wait until a back-off of a second has just begun.
	deadline := time.Now().Add(3 * time.Second)
	mark := strings.Count(e.logs.String(), `"retry_in":"1s"`)
	for strings.Count(e.logs.String(), `"retry_in":"1s"`) == mark && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	restore()
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("Run returned %v after cancel: the accept back-off ignored the context", d)
	}
	e.stopAudit()
	<-e.auditDone
}
