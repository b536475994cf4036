package reliability

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// TestWebhookBadInput sends hostile pods and malformed AdmissionReviews to
// credlet-injector: each is refused with a clear message (a pod: denied
// with a message naming the problem; a broken review: a 4xx, or an
// AdmissionReview whose status carries a 4xx code and a message), never
// allowed, and after each a good pod is still injected.
func TestWebhookBadInput(t *testing.T) {
	testenv.NeedServers(t)
	inj := startInjector(t)
	requireServing := func(t *testing.T) {
		t.Helper()
		if inj.exited() {
			t.Fatalf("injector exited\n%s", inj.logTail())
		}
		r, err := inj.admit(goodReview("after"))
		if err == nil {
			err = requireInjected(r, "after")
		}
		if err != nil {
			t.Fatalf("a good pod after hostile input: %v", err)
		}
	}
	valid := map[string]string{"credlet.io/role": "bot", "credlet.io/credential.zerodha": kvPrefix + "/zerodha"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range valid {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	many := func(n int, key func(i int) string, value func(i int) string) map[string]string {
		m := with(nil)
		for i := range n {
			m[key(i)] = value(i)
		}
		return m
	}
	pods := []struct {
		name        string
		annotations map[string]string
		mention     string // the message must contain this
	}{
		{"huge value", with(map[string]string{"credlet.io/credential.big": kvPrefix + "/" + strings.Repeat("a", 256<<10)}), "credential.big"},
		{"unicode name", with(map[string]string{"credlet.io/credential.ключ": kvPrefix + "/k"}), "credential."},
		{"traversal in name", with(map[string]string{"credlet.io/credential.../../etc": kvPrefix + "/k"}), "credential."},
		{"dotdot in KV path", with(map[string]string{"credlet.io/credential.up": kvPrefix + "/../../other/k"}), "credential.up"},
		{"path outside the allowed prefix", with(map[string]string{"credlet.io/credential.other": "secret/partners/other/k"}), "credential.other"},
		{"NUL in value", with(map[string]string{"credlet.io/credential.nul": kvPrefix + "/a\x00b"}), "credential.nul"},
		{"empty path", with(map[string]string{"credlet.io/credential.empty": ""}), "credential.empty"},
		{"unknown key", with(map[string]string{"credlet.io/rol": "bot"}), "credlet.io/rol"},
		{"bad refresh", with(map[string]string{"credlet.io/refresh": "-1s"}), "credlet.io/refresh"},
		{"500 unknown keys", many(500, func(i int) string { return fmt.Sprintf("credlet.io/x%d", i) }, func(int) string { return "v" }), "credlet.io/x"},
		{"unapproved vault-addr", with(map[string]string{"credlet.io/vault-addr": "https://vault.attacker.example.test:8200"}), "credlet.io/vault-addr"},
		{"10,000 credlet keys", many(10_000, func(i int) string { return fmt.Sprintf("credlet.io/y%d", i) }, func(int) string { return "v" }), "credlet.io/y"},
		{"100 credential sets", many(100, func(i int) string { return fmt.Sprintf("credlet.io/credential.s%d", i) },
			func(int) string { return kvPrefix + "/k" }), "at most 64"},
		{"escape sequence in a key", with(map[string]string{"credlet.io/credential.a\x1b[2J": kvPrefix + "/k"}), `\x1b`},
		{"500 bad credentials", many(500, func(i int) string { return fmt.Sprintf("credlet.io/credential.c%d", i) },
			func(int) string { return "secret/elsewhere/k" }), "credential.c"},
	}
	for _, tc := range pods {
		t.Run("pod/"+tc.name, func(t *testing.T) {
			uid := "hostile-" + strings.ReplaceAll(tc.name, " ", "-")
			start := time.Now()
			r, err := inj.admit(reviewOf(uid, pod(tc.annotations)))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("answered after %s", d)
			}
			switch {
			case r.status != 200:
				t.Errorf("status %d (%.200s): a pod the injector refuses gets a denied AdmissionReview", r.status, r.body)
			case r.allowed:
				t.Errorf("allowed (%d patch bytes): want denied", len(r.patch))
			case r.uid != uid:
				t.Errorf("uid %q echoed, want %q", r.uid, uid)
			case !strings.Contains(r.message, tc.mention):
				t.Errorf("denial %q does not name %q", clip(r.message), tc.mention)
			case strings.ContainsAny(r.message, "\x1b\x00"):
				t.Errorf("denial %q carries a raw control character", clip(r.message))
			default:
				t.Logf("denied: %s", clip(r.message))
			}
			requireServing(t)
		})
	}

	good := goodReview("raw")
	reviews := []struct {
		name        string
		method      string
		contentType string
		body        string
	}{
		{"not JSON", "POST", "application/json", "this is not json"},
		{"truncated JSON", "POST", "application/json", string(good[:len(good)/2])},
		{"no request", "POST", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`},
		{"wrong kind", "POST", "application/json", strings.Replace(string(good), `"kind":"AdmissionReview"`, `"kind":"ConfigMap"`, 1)},
		{"object not a pod", "POST", "application/json", string(reviewOf("x", "just a string"))},
		{"deep nesting", "POST", "application/json", `{"request":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`},
		{"oversized", "POST", "application/json", `{"pad":"` + strings.Repeat("a", 5<<20) + `"}`},
		{"wrong content type", "POST", "text/plain", string(good)},
		{"GET", "GET", "application/json", ""},
	}
	for _, tc := range reviews {
		t.Run("review/"+tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", inj.addr, inj.tlsConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "%s /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", tc.method, tc.contentType, len(tc.body))
			_, _ = io.WriteString(c, tc.body) // an early answer may close the connection mid-body
			r, err := readAdmission(bufio.NewReader(c))
			switch {
			case err != nil:
				t.Errorf("no clear answer: %v", err)
			case r.status >= 400 && r.status < 500:
				if len(strings.TrimSpace(string(r.body))) == 0 {
					t.Errorf("status %d without a message", r.status)
				}
			case r.status == 200 && !r.allowed && r.code >= 400 && r.code < 500 && r.message != "":
			default:
				t.Errorf("status %d, allowed=%t, code %d, message %q: want a 4xx or a refused review with a message", r.status, r.allowed, r.code, clip(r.message))
			}
			requireServing(t)
		})
	}

	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", inj.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
		b, _ := io.ReadAll(c)
		if len(b) > 0 && !strings.Contains(string(b), "400") {
			t.Errorf("answer to plain HTTP: %.200q", b)
		}
		requireServing(t)
	})

	t.Run("slowloris", func(t *testing.T) {
		n := sizes().slowloris
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for range n {
			c, err := tls.Dial("tcp", inj.addr, inj.tlsConfig())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			_, _ = io.WriteString(c, "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
			conns = append(conns, c)
		}
		// Dribbling clients must not stop normal admissions.
		for range 5 {
			t0 := time.Now()
			requireServing(t)
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("an admission took %s while %d slow connections were open", d, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// And the server hangs up on them (its header read timeout) rather
		// than holding them open.
		deadline := time.Now().Add(15 * time.Second)
		open := 0
		buf := make([]byte, 256)
		for _, c := range conns {
			_ = c.SetReadDeadline(deadline)
			if _, err := c.Read(buf); isTimeout(err) {
				open++
			}
		}
		if open > 0 {
			t.Errorf("%d of %d slow connections still open 15 s after their first bytes", open, n)
		}
	})
}
