package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/source"
)

var _ source.Verifier = (*HTTP)(nil)

func TestNewURLs(t *testing.T) {
	tests := []struct {
		url     string
		wantErr string
	}{
		{url: "http://127.0.0.1:8080/verify"},
		{url: "http://127.10.20.30:1/"},
		{url: "http://[::1]:9/check"},
		{url: "http://localhost:8080/verify"},
		{url: "unix:/run/app/verify.sock"},
		{url: "http://10.0.0.1:80/verify", wantErr: "not loopback"},
		{url: "http://example.com/verify", wantErr: "not loopback"},
		{url: "http://0.0.0.0:80/", wantErr: "not loopback"},
		{url: "https://127.0.0.1/verify", wantErr: "plain http"},
		{url: "ftp://127.0.0.1/", wantErr: "plain http"},
		{url: "http://user:pw@127.0.0.1/", wantErr: "plain http"},
		{url: "127.0.0.1:8080", wantErr: "plain http"},
		{url: "unix:relative.sock", wantErr: "absolute"},
		{url: "unix:", wantErr: "absolute"},
		{url: "", wantErr: "plain http"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := New(tt.url, Options{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "allowed:") {
				t.Fatalf("New(%q) = %v: want an error saying %q and what is allowed", tt.url, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

type hook struct {
	mu     sync.Mutex
	bodies []map[string]any
	status int
	delay  time.Duration
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["_method"], m["_ctype"] = r.Method, r.Header.Get("Content-Type")
	h.mu.Lock()
	h.bodies = append(h.bodies, m)
	status, delay := h.status, h.delay
	h.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte("FAKE-echoed-by-a-careless-hook"))
}

func fields() map[string][]byte {
	return map[string][]byte{"api_key": []byte("FAKE-api-key-123"), "api_secret": []byte("FAKE\"sec\nret")}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		delay   time.Duration
		wantErr error
	}{
		{name: "accepted", status: 200},
		{name: "accepted 204", status: 204},
		{name: "rejected", status: 401, wantErr: ErrRejected},
		{name: "server error", status: 500, wantErr: ErrRejected},
		{name: "redirect not followed", status: 302, wantErr: ErrRejected},
		{name: "timeout", status: 200, delay: 2 * time.Second, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hk := &hook{status: tt.status, delay: tt.delay}
			srv := httptest.NewServer(hk) // listens on 127.0.0.1
			defer srv.Close()
			var logs bytes.Buffer
			v, err := New(srv.URL+"/verify", Options{Timeout: 200 * time.Millisecond,
				Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			in := fields()
			start := time.Now()
			err = v.Verify(context.Background(), "acme", 7, in)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify = %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
			if tt.delay > 0 && time.Since(start) > time.Second {
				t.Fatalf("timeout took %v", time.Since(start))
			}
			if err != nil && strings.Contains(err.Error(), "FAKE") {
				t.Fatalf("error carries a value: %v", err)
			}
			if strings.Contains(logs.String(), "FAKE") {
				t.Fatalf("logs carry a value: %s", logs.String())
			}
			if string(in["api_key"]) != "FAKE-api-key-123" {
				t.Fatal("Verify modified the caller's fields")
			}
			hk.mu.Lock()
			defer hk.mu.Unlock()
			if len(hk.bodies) != 1 {
				t.Fatalf("hook called %d times", len(hk.bodies))
			}
			b := hk.bodies[0]
			f, _ := b["fields"].(map[string]any)
			if b["_method"] != "POST" || b["_ctype"] != "application/json" || b["name"] != "acme" || b["version"] != float64(7) ||
				f["api_key"] != "FAKE-api-key-123" || f["api_secret"] != "FAKE\"sec\nret" || len(f) != 2 {
				t.Fatalf("hook got %v", b)
			}
		})
	}
}

func TestVerifyUnixSocket(t *testing.T) {
	d, err := os.MkdirTemp("", "vf")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	path := filepath.Join(d, "hook.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	hk := &hook{status: 200}
	srv := &http.Server{Handler: hk}
	go srv.Serve(ln)
	defer srv.Close()
	v, err := New("unix:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(context.Background(), "acme", 2, fields()); err != nil {
		t.Fatal(err)
	}
	hk.status = 403
	if err := v.Verify(context.Background(), "acme", 3, fields()); !errors.Is(err, ErrRejected) {
		t.Fatalf("Verify = %v, want ErrRejected", err)
	}
}

func TestVerifyNobodyListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	v, err := New("http://"+addr+"/verify", Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = v.Verify(context.Background(), "acme", 1, fields())
	if err == nil || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Verify with nothing listening = %v", err)
	}
}

func TestLoopbackOnlyAtDial(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:80": true, "[::1]:80": true, "10.1.2.3:80": false, "[2001:db8::1]:443": false} {
		err := loopbackOnly("tcp", addr, nil)
		if (err == nil) != ok || (!ok && !errors.Is(err, ErrNotLoopback)) {
			t.Errorf("loopbackOnly(%s) = %v", addr, err)
		}
	}
}

func TestEncode(t *testing.T) {
	buf, n, err := encode("acme", 12, map[string][]byte{"b": []byte("x\"y"), "a": []byte("\xff")})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	want := `{"name":"acme","version":12,"fields":{"a":"\ufffd","b":"x\"y"}}`
	if got := string(buf.Bytes()[:n]); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	buf2, n2, err := encode("acme", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer buf2.Free()
	if got := string(buf2.Bytes()[:n2]); got != `{"name":"acme","version":1,"fields":{}}` {
		t.Fatalf("empty: %s", got)
	}
}
