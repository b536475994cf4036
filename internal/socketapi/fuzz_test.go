package socketapi

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/store"
)

// FuzzParseRequest: any path and query either parse into a well-formed
// request or give a 4xx error with a one-line message.
func FuzzParseRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"/v1/credentials", ""},
		{"/v1/credentials/acme", ""},
		{"/v1/credentials/acme", "wait=3&timeout=30s"},
		{"/v1/credentials/acme", "wait=3&timeout=30"},
		{"/v1/credentials/acme", "wait=0"},
		{"/v1/credentials/acme", "timeout=1s"},
		{"/v1/credentials/acme", "wait=1&wait=2"},
		{"/v1/credentials/acme", "wait=%zz"},
		{"/v1/credentials/acme", "wait=99999999999999999999"},
		{"/v1/credentials/acme", "wait=1&timeout=-5s"},
		{"/v1/credentials/acme", "wait=1&timeout=100h"},
		{"/v1/credentials/../x", ""},
		{"/v1/health", "x=1"},
		{"/", ""},
	} {
		f.Add(s[0], s[1])
	}
	const maxWait = 5 * time.Minute
	f.Fuzz(func(t *testing.T, path, query string) {
		r, err := parseRequest(path, query, maxWait)
		if err != nil {
			if err.status != 400 && err.status != 404 {
				t.Fatalf("status %d for %q ? %q", err.status, path, query)
			}
			if err.message == "" || strings.ContainsAny(err.message, "\n\r") || len(err.message) > 400 {
				t.Fatalf("error message not one short line: %q", err.message)
			}
			return
		}
		switch r.route {
		case routeList, routeHealth:
			if query != "" || r.name != "" || r.wait {
				t.Fatalf("%q ? %q parsed as %+v", path, query, r)
			}
		case routeGet:
			if credspec.ValidateName(r.name) != nil || path != credentialsPrefix+r.name {
				t.Fatalf("bad name %q accepted from %q", r.name, path)
			}
		default:
			t.Fatalf("no route for %q", path)
		}
		if r.wait && (r.version < 0 || r.timeout <= 0 || r.timeout > maxWait) {
			t.Fatalf("wait %+v out of bounds", r)
		}
		if !r.wait && r.timeout != 0 {
			t.Fatalf("timeout without wait: %+v", r)
		}
	})
}

// FuzzConn feeds raw bytes, as a client would write them, to a connection
// of the server: it never panics or hangs, answers only the documented
// statuses, and a value leaves only in a 200 answer.
func FuzzConn(f *testing.F) {
	for _, s := range []string{
		"GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /v1/credentials/acme HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1/credentials/acme?wait=1&timeout=1ms HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1/credentials/acme?wait=9&timeout=1ms HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"1\"\r\n\r\n",
		"GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\nOrigin: http://x\r\n\r\n",
		"GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /v1/credentials/acme HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /v1/credentials HTTP/1.0\r\n\r\n",
		"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1/credentials/pending?wait=0&timeout=1ms HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1/credentials/%61cme HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1%2fcredentials%2Facme HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1/credentials/acme HTTP/1.1\r\n\r\n",
		"GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET http://x/v1/credentials/acme HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /v1/credentials/acme HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n",
		"GET /v1/credentials/acme HTTP/2.0\r\n\r\n",
		"\r\nGET /v1/credentials/acme HTTP/1.1\nHost: a\n\n",
	} {
		f.Add([]byte(s))
	}
	st, err := store.New([]store.Declared{{Name: "acme"}, {Name: "pending"}})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	if err := st.Commit("acme", store.Meta{Version: 1}, map[string][]byte{"api_key": []byte("FAKE-api-key-123")}); err != nil {
		f.Fatal(err)
	}
	srv, err := New(st, Options{Path: "/unused.sock", MaxWait: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	allowed := peer{Peer: audit.Peer{UID: 1}, known: true, allowed: true}
	ok := map[string]bool{"200": true, "304": true, "400": true, "403": true, "404": true, "405": true, "431": true, "503": true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		client, server := socketPair(t)
		defer client.Close()
		c := srv.newConn(server, allowed)
		done := make(chan struct{})
		go func() { defer close(done); c.serve(context.Background()) }()
		go func() { _, _ = client.Write(raw); _ = client.CloseWrite() }()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, err := io.ReadAll(client)
		if err != nil {
			t.Fatalf("reading answers to %q: %v", raw, err)
		}
		<-done
		for line := range strings.Lines(string(out)) {
			if rest, found := strings.CutPrefix(line, "HTTP/1.1 "); found && len(rest) >= 3 && !ok[rest[:3]] {
				t.Fatalf("status %q for %q", line, raw)
			}
		}
		if bytes.Contains(out, []byte("FAKE")) && !bytes.Contains(out, []byte("HTTP/1.1 200 OK")) {
			t.Fatalf("value outside a 200 answer to %q:\n%s", raw, out)
		}
	})
}

// socketPair returns two connected Unix stream sockets.
func socketPair(t testing.TB) (client, server *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1]
}
