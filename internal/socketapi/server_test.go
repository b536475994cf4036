package socketapi

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/credlet/credlet/internal/testlog"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/store"
)

type syncBuffer = testlog.Buffer

// env is a running server with everything it writes captured.
type env struct {
	st      *store.Store
	srv     *Server
	path    string
	logs    *syncBuffer
	audit   *syncBuffer
	metrics *metrics.Agent
	cancel  context.CancelFunc
	done    chan error

	stopAudit context.CancelFunc
	auditDone chan error
}

// shortDir returns a fresh directory with a short path: socket paths are
// limited to 107 bytes and test names make t.TempDir long.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func fakeFields(v int) map[string][]byte {
	s := strconv.Itoa(v)
	return map[string][]byte{
		"api_key":      []byte("FAKE-api-key-v" + s),
		"api_secret":   []byte("FAKE-api-secret\"quoted\"\n-v" + s),
		"access_token": []byte("FAKE-token-v" + s),
	}
}

func commitV(t testing.TB, st *store.Store, name string, v int) {
	t.Helper()
	meta := store.Meta{Version: v, FetchedAt: time.Date(2025, 3, 1, 12, 0, v, 0, time.UTC)}
	if err := st.Commit(name, meta, fakeFields(v)); err != nil {
		t.Fatal(err)
	}
}

func startEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	st, err := store.New([]store.Declared{{Name: "acme"}, {Name: "pending"}, {Name: "extra", Optional: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e := &env{st: st, path: filepath.Join(shortDir(t), "run", "agent.sock"), logs: &syncBuffer{}, audit: &syncBuffer{},
		metrics: metrics.New(), done: make(chan error, 1)}
	al := audit.New(e.audit)
	actx, stopAudit := context.WithCancel(context.Background())
	e.stopAudit, e.auditDone = stopAudit, make(chan error, 1)
	go func() { e.auditDone <- al.Run(actx) }()
	opts := Options{
		Path:    e.path,
		Logger:  slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: e.metrics,
		Audit:   al,
	}
	if mod != nil {
		mod(&opts)
	}
	e.srv, err = New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- e.srv.Run(ctx) }()
	t.Cleanup(func() { e.stop(t) })
	waitForSocket(t, e.path, e.done)
	return e
}

func waitForSocket(t testing.TB, path string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("server stopped before listening: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("socket %s never accepted a connection", path)
}

func (e *env) stop(t testing.TB) {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil on cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after cancel")
	}
	e.stopAudit() // after the server: its last records land
	if err := <-e.auditDone; err != nil {
		t.Errorf("audit Run: %v", err)
	}
	for _, out := range []string{e.logs.String(), e.audit.String()} {
		if strings.Contains(out, "FAKE") {
			t.Errorf("a secret value reached the logs or the audit trail:\n%s", out)
		}
	}
}

func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 16,
	}}
}

type answer struct {
	status int
	header http.Header
	body   string
	close  bool // the server said Connection: close
}

func do(t testing.TB, c *http.Client, method, target string, hdr map[string]string, body io.Reader) answer {
	t.Helper()
	req, err := http.NewRequest(method, "http://agent"+target, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b), resp.Close}
}

type credBody struct {
	Name      string            `json:"name"`
	Version   int               `json:"version"`
	Fields    map[string]string `json:"fields"`
	FetchedAt time.Time         `json:"fetched_at"`
	ExpiresAt *time.Time        `json:"expires_at"`
}

func errCode(t testing.TB, body string) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Error.Message == "" || strings.Contains(e.Error.Message, "\n") {
		t.Fatalf("error message must be one non-empty line: %q", e.Error.Message)
	}
	return e.Error.Code
}

func TestEndpoints(t *testing.T) {
	e := startEnv(t, nil)
	commitV(t, e.st, "acme", 3)
	c := unixClient(e.path)
	tests := []struct {
		name     string
		method   string
		target   string
		hdr      map[string]string
		body     io.Reader
		status   int
		code     string // error code, for error answers
		wantBody func(t *testing.T, a answer)
	}{
		{name: "get", method: "GET", target: "/v1/credentials/acme", status: 200, wantBody: func(t *testing.T, a answer) {
			var b credBody
			if err := json.Unmarshal([]byte(a.body), &b); err != nil {
				t.Fatal(err)
			}
			want := fakeFields(3)
			if b.Name != "acme" || b.Version != 3 || len(b.Fields) != 3 || b.ExpiresAt != nil ||
				!b.FetchedAt.Equal(time.Date(2025, 3, 1, 12, 0, 3, 0, time.UTC)) {
				t.Fatalf("body %+v", b)
			}
			for k, v := range want {
				if b.Fields[k] != string(v) {
					t.Errorf("field %s = %q, want %q", k, b.Fields[k], v)
				}
			}
			if a.header.Get("ETag") != `"3"` || a.header.Get("Content-Type") != "application/json" ||
				a.header.Get("Cache-Control") != "no-store" || a.header.Get("Content-Length") != strconv.Itoa(len(a.body)) {
				t.Errorf("headers %v", a.header)
			}
		}},
		{name: "head", method: "HEAD", target: "/v1/credentials/acme", status: 200, wantBody: func(t *testing.T, a answer) {
			if a.body != "" || a.header.Get("ETag") != `"3"` || a.header.Get("Content-Length") == "" {
				t.Fatalf("HEAD answered %q with %v", a.body, a.header)
			}
		}},
		{name: "if-none-match current", method: "GET", target: "/v1/credentials/acme", hdr: map[string]string{"If-None-Match": `"3"`}, status: 304},
		{name: "if-none-match older", method: "GET", target: "/v1/credentials/acme", hdr: map[string]string{"If-None-Match": `"2"`}, status: 200},
		{name: "wait for an older version answers at once", method: "GET", target: "/v1/credentials/acme?wait=2&timeout=1m", status: 200},
		{name: "not fetched yet", method: "GET", target: "/v1/credentials/pending", status: 503, code: "not_ready"},
		{name: "unknown set", method: "GET", target: "/v1/credentials/nope", status: 404, code: "not_found"},
		{name: "unknown set with wait", method: "GET", target: "/v1/credentials/nope?wait=1", status: 404, code: "not_found"},
		{name: "bad name", method: "GET", target: "/v1/credentials/Acme", status: 400, code: "bad_request"},
		{name: "slash in name", method: "GET", target: "/v1/credentials/a/b", status: 400, code: "bad_request"},
		{name: "unknown endpoint", method: "GET", target: "/v2/credentials", status: 404, code: "not_found"},
		{name: "post", method: "POST", target: "/v1/credentials/acme", body: strings.NewReader("{}"), status: 405, code: "method_not_allowed"},
		{name: "delete", method: "DELETE", target: "/v1/credentials/acme", status: 405, code: "method_not_allowed"},
		{name: "origin", method: "GET", target: "/v1/credentials/acme", hdr: map[string]string{"Origin": "http://evil.example"}, status: 403, code: "forbidden"},
		{name: "referer", method: "GET", target: "/v1/credentials/acme", hdr: map[string]string{"Referer": "http://evil.example/"}, status: 403, code: "forbidden"},
		{name: "body on GET", method: "GET", target: "/v1/credentials/acme", body: strings.NewReader("x"), status: 400, code: "bad_request"},
		{name: "unknown query", method: "GET", target: "/v1/credentials/acme?foo=1", status: 400, code: "bad_request"},
		{name: "timeout without wait", method: "GET", target: "/v1/credentials/acme?timeout=5s", status: 400, code: "bad_request"},
		{name: "bad wait", method: "GET", target: "/v1/credentials/acme?wait=-1", status: 400, code: "bad_request"},
		{name: "bad timeout", method: "GET", target: "/v1/credentials/acme?wait=3&timeout=soon", status: 400, code: "bad_request"},
		{name: "query on list", method: "GET", target: "/v1/credentials?wait=1", status: 400, code: "bad_request"},
		{name: "list", method: "GET", target: "/v1/credentials", status: 200, wantBody: func(t *testing.T, a answer) {
			want := `{"credentials":[{"name":"acme","version":3,"fetched_at":"2025-03-01T12:00:03Z"},{"name":"pending","version":0},{"name":"extra","version":0}]}` + "\n"
			if a.body != want {
				t.Fatalf("list = %s\nwant   %s", a.body, want)
			}
		}},
		{name: "health", method: "GET", target: "/v1/health", status: 200, wantBody: func(t *testing.T, a answer) {
			var h struct {
				Ready       bool
				Credentials map[string]struct {
					Version    int      `json:"version"`
					Optional   bool     `json:"optional"`
					AgeSeconds *float64 `json:"age_seconds"`
					LastError  string   `json:"last_error"`
				}
			}
			if err := json.Unmarshal([]byte(a.body), &h); err != nil {
				t.Fatal(err)
			}
			if h.Ready || len(h.Credentials) != 3 || h.Credentials["acme"].Version != 3 || h.Credentials["acme"].AgeSeconds == nil ||
				h.Credentials["pending"].AgeSeconds != nil || !h.Credentials["extra"].Optional {
				t.Fatalf("health %s", a.body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, c, tt.method, tt.target, tt.hdr, tt.body)
			if a.status != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.target, a.status, a.body, tt.status)
			}
			if tt.code != "" {
				if got := errCode(t, a.body); got != tt.code {
					t.Fatalf("code %q, want %q", got, tt.code)
				}
				if strings.Contains(a.body, "FAKE") {
					t.Fatalf("error answer carries a value: %s", a.body)
				}
			}
			if tt.wantBody != nil {
				tt.wantBody(t, a)
			}
		})
	}
	if got := counterValue(t, e.metrics.SocketRequests.WithLabelValues("404")); got != 3 {
		t.Errorf("credlet_socket_requests_total{code=404} = %v, want 3", got)
	}
	if got := counterValue(t, e.metrics.SocketRequests.WithLabelValues("200")); got < 6 {
		t.Errorf("credlet_socket_requests_total{code=200} = %v, want >= 6", got)
	}
}

func TestExpiresAt(t *testing.T) {
	e := startEnv(t, nil)
	exp := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	if err := e.st.Commit("acme", store.Meta{Version: 1, ExpiresAt: exp}, fakeFields(1)); err != nil {
		t.Fatal(err)
	}
	a := do(t, unixClient(e.path), "GET", "/v1/credentials/acme", nil, nil)
	var b credBody
	if err := json.Unmarshal([]byte(a.body), &b); err != nil {
		t.Fatal(err)
	}
	if b.ExpiresAt == nil || !b.ExpiresAt.Equal(exp) {
		t.Fatalf("expires_at %v, want %v", b.ExpiresAt, exp)
	}
}

func TestAuditRead(t *testing.T) {
	e := startEnv(t, nil)
	commitV(t, e.st, "acme", 5)
	c := unixClient(e.path)
	do(t, c, "GET", "/v1/credentials/acme", nil, nil)
	do(t, c, "HEAD", "/v1/credentials/acme", nil, nil) // not a read of values
	e.stop(t)
	var reads int
	for line := range strings.Lines(e.audit.String()) {
		var r struct {
			Event      string     `json:"event"`
			Credential string     `json:"credential"`
			Version    int        `json:"version"`
			Peer       audit.Peer `json:"peer"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Event == "read" {
			reads++
			if r.Credential != "acme" || r.Version != 5 || r.Peer.UID != uint32(os.Getuid()) || r.Peer.PID != int32(os.Getpid()) {
				t.Errorf("read record %s", line)
			}
		}
	}
	if reads != 1 {
		t.Fatalf("%d read records, want 1:\n%s", reads, e.audit.String())
	}
}

func TestLongPoll(t *testing.T) {
	t.Run("wakes on commit", func(t *testing.T) {
		e := startEnv(t, nil)
		commitV(t, e.st, "acme", 1)
		c := unixClient(e.path)
		got := make(chan answer, 1)
		go func() { got <- do(t, c, "GET", "/v1/credentials/acme?wait=1&timeout=30s", nil, nil) }()
		select {
		case a := <-got:
			t.Fatalf("long poll answered before a commit: %d %s", a.status, a.body)
		case <-time.After(100 * time.Millisecond):
		}
		start := time.Now()
		commitV(t, e.st, "acme", 2)
		select {
		case a := <-got:
			if a.status != 200 || a.header.Get("ETag") != `"2"` || !strings.Contains(a.body, "FAKE-api-key-v2") {
				t.Fatalf("woke with %d %v %s", a.status, a.header, a.body)
			}
			t.Logf("woke %v after the commit", time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatal("long poll did not wake on commit")
		}
	})
	t.Run("waits for the first version", func(t *testing.T) {
		e := startEnv(t, nil)
		got := make(chan answer, 1)
		go func() { got <- do(t, unixClient(e.path), "GET", "/v1/credentials/pending?wait=0", nil, nil) }()
		time.Sleep(50 * time.Millisecond)
		commitV(t, e.st, "pending", 1)
		if a := <-got; a.status != 200 || a.header.Get("ETag") != `"1"` {
			t.Fatalf("got %d %v", a.status, a.header)
		}
	})
	t.Run("times out with 304", func(t *testing.T) {
		fc := clock.NewFake(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
		e := startEnv(t, func(o *Options) { o.Clock = fc; o.MaxWait = time.Minute })
		commitV(t, e.st, "acme", 7)
		armed := fc.TimerCreated()
		got := make(chan answer, 1)
		go func() { got <- do(t, unixClient(e.path), "GET", "/v1/credentials/acme?wait=7&timeout=10m", nil, nil) }()
		select {
		case <-armed:
		case <-time.After(5 * time.Second):
			t.Fatal("long poll never armed its timer")
		}
		deadline, ok := fc.NextDeadline()
		if !ok || deadline.Sub(fc.Now()) != time.Minute {
			t.Fatalf("timer due in %v, want the 1m cap", deadline.Sub(fc.Now()))
		}
		fc.Advance(59 * time.Second)
		select {
		case a := <-got:
			t.Fatalf("answered before the timeout: %d", a.status)
		case <-time.After(50 * time.Millisecond):
		}
		fc.Advance(time.Second)
		select {
		case a := <-got:
			if a.status != 304 || a.header.Get("ETag") != `"7"` || a.body != "" {
				t.Fatalf("timeout answered %d %v %q", a.status, a.header, a.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no answer after the timeout")
		}
		if got := counterValue(t, e.metrics.SocketRequests.WithLabelValues("304")); got != 1 {
			t.Errorf("304 counted %v times", got)
		}
	})
	t.Run("shutdown answers open polls", func(t *testing.T) {
		e := startEnv(t, nil)
		commitV(t, e.st, "acme", 1)
		got := make(chan answer, 1)
		go func() { got <- do(t, unixClient(e.path), "GET", "/v1/credentials/acme?wait=1&timeout=5m", nil, nil) }()
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		e.stop(t)
		select {
		case a := <-got:
			if a.status != 503 || errCode(t, a.body) != "not_ready" {
				t.Fatalf("open poll at shutdown got %d %s", a.status, a.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("open poll not answered at shutdown")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("shutdown took %v", d)
		}
		if _, err := os.Lstat(e.path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket still there after shutdown: %v", err)
		}
	})
}

func TestSocketFileModes(t *testing.T) {
	e := startEnv(t, nil)
	fi, err := os.Lstat(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(e.path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o750 {
		t.Errorf("socket directory mode %v, want 0750", di.Mode().Perm())
	}
}

func TestExistingSocketPath(t *testing.T) {
	newServer := func(t *testing.T, path string) *Server {
		st, _ := store.New(nil)
		s, err := New(st, Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	runBriefly := func(s *Server) error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return s.Run(ctx)
	}
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "a.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // leaves the file, nobody listening: a crashed agent
		if err := runBriefly(newServer(t, path)); err != nil {
			t.Fatalf("Run with a stale socket: %v", err)
		}
	})
	t.Run("live socket is left alone", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "a.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		err = runBriefly(newServer(t, path))
		if err == nil || !strings.Contains(err.Error(), "another process") {
			t.Fatalf("Run over a live socket = %v, want an error naming another process", err)
		}
		if c, err := net.Dial("unix", path); err != nil {
			t.Fatalf("the other process's socket was disturbed: %v", err)
		} else {
			c.Close()
		}
	})
	t.Run("regular file is left alone", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "a.sock")
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := runBriefly(newServer(t, path)); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("Run over a regular file = %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep" {
			t.Fatal("regular file was removed")
		}
	})
}

func TestNewOptions(t *testing.T) {
	st, _ := store.New(nil)
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "empty path", opts: Options{}, wantErr: "empty"},
		{name: "path too long", opts: Options{Path: "/" + strings.Repeat("x", 107)}, wantErr: "at most 107"},
		{name: "negative wait", opts: Options{Path: "/tmp/a.sock", MaxWait: -time.Second}, wantErr: "positive"},
		{name: "ok", opts: Options{Path: "/tmp/a.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(st, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(s.allowUIDs) != 1 || s.allowUIDs[0] != uint32(os.Getuid()) || s.maxWait != DefaultMaxWait {
					t.Fatalf("defaults: uids %v maxWait %v", s.allowUIDs, s.maxWait)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestNotAllowedUIDInProcess: the same peer (this process) is refused when
// its UID and GID are not in the lists.
func TestNotAllowedUIDInProcess(t *testing.T) {
	e := startEnv(t, func(o *Options) { o.AllowUIDs = []uint32{54321}; o.AllowGIDs = []uint32{54321} })
	commitV(t, e.st, "acme", 1)
	a := do(t, unixClient(e.path), "GET", "/v1/credentials/acme", nil, nil)
	if a.status != 403 || errCode(t, a.body) != "forbidden" || strings.Contains(a.body, "FAKE") {
		t.Fatalf("got %d %s", a.status, a.body)
	}
	if !a.close {
		t.Errorf("denied answer keeps the connection open: %v", a.header)
	}
	// Two connections: startEnv's readiness probe and the request.
	if got := counterValue(t, e.metrics.SocketDenied); got != 2 {
		t.Errorf("credlet_socket_denied_total = %v, want 2", got)
	}
	e.stop(t)
	if !strings.Contains(e.audit.String(), `"event":"deny"`) {
		t.Errorf("no deny record: %s", e.audit.String())
	}
}

// counterValue reads a counter's current value.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
