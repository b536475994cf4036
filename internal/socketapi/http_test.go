package socketapi

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange writes raw bytes on a fresh connection and returns every
// answer read until the server closes it or 2s pass.
func rawExchange(t *testing.T, path, raw string, halfClose bool) []*http.Response {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		_ = c.(*net.UnixConn).CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return out
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

func statuses(rs []*http.Response) string {
	var s []string
	for _, r := range rs {
		st := r.Status[:3]
		if r.Close {
			st += "+close"
		}
		s = append(s, st)
	}
	return strings.Join(s, " ")
}

func TestHTTPFraming(t *testing.T) {
	e := startEnv(t, nil)
	commitV(t, e.st, "acme", 1)
	get := "GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name      string
		raw       string
		halfClose bool
		want      string
	}{
		{name: "pipelined", raw: get + get + "GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n", halfClose: true, want: "200 200 200"},
		{name: "connection close", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + get, want: "200+close"},
		{name: "http/1.0 closes", raw: "GET /v1/health HTTP/1.0\r\n\r\n" + get, want: "200+close"},
		{name: "http/1.0 keep-alive", raw: "GET /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get, halfClose: true, want: "200 200"},
		{name: "bare LF", raw: "GET /v1/health HTTP/1.1\nHost: a\n\n", halfClose: true, want: "400+close"},
		{name: "bare LF after the request line", raw: "GET /v1/health HTTP/1.1\r\nHost: a\n\r\n", halfClose: true, want: "400+close"},
		{name: "bare LF ends the head", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\n\n", halfClose: true, want: "400+close"},
		{name: "missing host", raw: "GET /v1/health HTTP/1.1\r\n\r\n" + get, want: "400+close"},
		{name: "two hosts", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + get, want: "400+close"},
		{name: "http/1.0 needs no host", raw: "GET /v1/health HTTP/1.0\r\n\r\n", want: "200+close"},
		{name: "encoded slash", raw: "GET /v1%2fcredentials%2facme HTTP/1.1\r\nHost: a\r\n\r\n" + get, want: "400+close"},
		{name: "encoded slash upper case", raw: "GET /v1/credentials%2Facme HTTP/1.1\r\nHost: a\r\n\r\n" + get, want: "400+close"},
		{name: "encoded slash in a name", raw: "GET /v1/credentials/acme%2F HTTP/1.1\r\nHost: a\r\n\r\n" + get, want: "400+close"},
		{name: "malformed line closes", raw: "GARBAGE\r\n\r\n" + get, want: "400+close"},
		{name: "http/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: "400+close"},
		{name: "absolute target", raw: "GET http://a/v1/health HTTP/1.1\r\nHost: a\r\n\r\n", want: "400+close"},
		{name: "folded header", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", want: "400+close"},
		{name: "NUL in head", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", want: "400+close"},
		{name: "head too long", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n", want: "431+close"},
		{name: "too many fields", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: a\r\n", 70) + "\r\n", want: "400+close"},
		{name: "body closes", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" + get, want: "400+close"},
		{name: "zero length is no body", raw: "GET /v1/health HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + get, halfClose: true, want: "200 200"},
		{name: "post with body closes", raw: "POST /v1/health HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" + get, want: "405+close"},
		{name: "escaped path", raw: "GET /v1/credentials/%61cme HTTP/1.1\r\nHost: a\r\n\r\n", halfClose: true, want: "200"},
		{name: "bad escape", raw: "GET /v1/credentials/%zz HTTP/1.1\r\nHost: a\r\n\r\n", want: "400+close"},
		{name: "cut short", raw: "GET /v1/health HTTP/1.1\r\nHost: a", halfClose: true, want: "400+close"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statuses(rawExchange(t, e.path, tt.raw, tt.halfClose)); got != tt.want {
				t.Fatalf("answers %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLongPollPipelined: a request sent behind a parked long poll is kept
// and answered after it, in order.
func TestLongPollPipelined(t *testing.T) {
	e := startEnv(t, nil)
	commitV(t, e.st, "acme", 1)
	c, err := net.Dial("unix", e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/credentials/acme?wait=1&timeout=30s HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // parked, its hang-up watcher reading
	if _, err := io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	commitV(t, e.st, "acme", 2)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	first, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(first.Body)
	if first.StatusCode != 200 || first.Header.Get("ETag") != `"2"` || !strings.Contains(string(body), "FAKE-api-key-v2") {
		t.Fatalf("long poll answered %d %v", first.StatusCode, first.Header)
	}
	second, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(second.Body)
	if second.StatusCode != 200 || !strings.Contains(string(body), `"ready"`) {
		t.Fatalf("pipelined request answered %d %s", second.StatusCode, body)
	}
}

// TestLongPollHangUp: a client that goes away stops its long poll at once;
// the server does not keep waiting for a commit or the timeout.
func TestLongPollHangUp(t *testing.T) {
	e := startEnv(t, nil)
	commitV(t, e.st, "acme", 1)
	c, err := net.Dial("unix", e.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /v1/credentials/acme?wait=1&timeout=5m HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.Close()
	// The abandoned poll must not answer (it would count a 200 or 304)
	// and must not hold shutdown: stopping within the grace period
	// without any commit proves it ended.
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	e.stop(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v: the abandoned long poll was still waiting", d)
	}
	for _, code := range []string{"200", "304", "503"} {
		if n := counterValue(t, e.metrics.SocketRequests.WithLabelValues(code)); n != 0 {
			t.Errorf("%v answers with code %s to a client that hung up", n, code)
		}
	}
}
