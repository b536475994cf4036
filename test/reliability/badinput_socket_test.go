package reliability

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// rawExchange sends raw bytes on a new connection to the socket and reads
// one HTTP response.
func rawExchange(socket string, req string, timeout time.Duration) (*http.Response, string, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, string(b), nil
}

// apiErrorCode returns error.code of a socket API error body, or "".
func apiErrorCode(body string) (code, message string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) != nil {
		return "", ""
	}
	return e.Error.Code, e.Error.Message
}

// TestSocketBadInput sends hostile requests to the agent's socket: each gets
// a clear error (a 4xx status; from the API, a JSON error with a code and a
// message), and after each the agent still serves a good read.
func TestSocketBadInput(t *testing.T) {
	testenv.NeedServers(t)
	name := "hostile"
	path := uniquePath(name)
	putVersion(t, path, 1, outageFields)
	a := startAgent(t, agentOpts{creds: []string{name + "=secret/" + path}})
	a.waitReady(30 * time.Second)
	good := socketClient(a.socket)
	requireServing := func(t *testing.T) {
		t.Helper()
		if a.exited() {
			t.Fatalf("agent exited: %v\n%s", a.waitErr, a.logTail())
		}
		cr, err := getCredential(good, name)
		if err != nil || cr.Version != 1 {
			t.Fatalf("good read after hostile input: %v (version %d)", err, cr.Version)
		}
	}
	get := func(target string, headers ...string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: agent\r\n" + strings.Join(headers, "") + "\r\n"
	}
	tests := []struct {
		name     string
		req      string
		wantCode []int  // allowed HTTP statuses (nil: any 4xx)
		wantAPI  string // error.code, when the API (not net/http) answers
	}{
		{"oversized header", get("/v1/credentials/"+name, "X-Pad: "+strings.Repeat("a", 64<<10)+"\r\n"), []int{431}, ""},
		{"many headers", get("/v1/credentials/"+name, strings.Repeat("X-H: v\r\n", 4000)), []int{400, 431}, ""},
		{"POST", "POST /v1/credentials/" + name + " HTTP/1.1\r\nHost: agent\r\nContent-Length: 0\r\n\r\n", []int{405}, "method_not_allowed"},
		{"PUT", "PUT /v1/credentials/" + name + " HTTP/1.1\r\nHost: agent\r\nContent-Length: 0\r\n\r\n", []int{405}, "method_not_allowed"},
		{"DELETE", "DELETE /v1/credentials/" + name + " HTTP/1.1\r\nHost: agent\r\n\r\n", []int{405}, "method_not_allowed"},
		{"PATCH", "PATCH /v1/credentials/" + name + " HTTP/1.1\r\nHost: agent\r\nContent-Length: 0\r\n\r\n", []int{405}, "method_not_allowed"},
		{"unknown method", "BREW /v1/credentials/" + name + " HTTP/1.1\r\nHost: agent\r\n\r\n", []int{405}, "method_not_allowed"},
		{"body on GET", "GET /v1/credentials/" + name + " HTTP/1.1\r\nHost: agent\r\nContent-Length: 5\r\n\r\nhello", []int{400}, "bad_request"},
		{"unknown set", get("/v1/credentials/nope"), []int{404}, "not_found"},
		{"traversal in name", get("/v1/credentials/../../etc/passwd"), nil, ""},
		{"encoded traversal", get("/v1/credentials/..%2f..%2fetc%2fpasswd"), nil, ""},
		{"huge name", get("/v1/credentials/" + strings.Repeat("x", 4000)), nil, ""},
		{"bad wait", get("/v1/credentials/" + name + "?wait=abc"), []int{400}, "bad_request"},
		{"negative timeout", get("/v1/credentials/" + name + "?wait=1&timeout=-5s"), []int{400}, "bad_request"},
		{"bad timeout", get("/v1/credentials/" + name + "?wait=1&timeout=soon"), []int{400}, "bad_request"},
		{"browser origin", get("/v1/credentials/"+name, "Origin: http://evil.example.test\r\n"), []int{403}, "forbidden"},
		{"unknown path", get("/v2/secrets"), []int{404}, ""},
		{"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", []int{400}, ""},
		{"bad version", "GET /v1/credentials/" + name + " HTTP/9.9\r\nHost: agent\r\n\r\n", []int{400, 505}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := rawExchange(a.socket, tc.req, 10*time.Second)
			switch {
			case err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
				// Closing the connection on garbage is a fine answer only
				// for requests net/http cannot parse at all.
				if tc.wantAPI != "" {
					t.Errorf("connection closed without an answer; want %d %s", tc.wantCode, tc.wantAPI)
				}
			case err != nil:
				t.Errorf("exchange: %v", err)
			default:
				if tc.wantCode == nil && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
					t.Errorf("status %d (%s): want a 4xx error", resp.StatusCode, clip(body))
				}
				if tc.wantCode != nil && !slices.Contains(tc.wantCode, resp.StatusCode) {
					t.Errorf("status %d, want one of %v (%s)", resp.StatusCode, tc.wantCode, clip(body))
				}
				if tc.wantAPI != "" {
					code, msg := apiErrorCode(body)
					if code != tc.wantAPI || msg == "" {
						t.Errorf("error body %s: want code %q and a message", clip(body), tc.wantAPI)
					}
				}
				if strings.Contains(body, "FAKE-") {
					t.Errorf("an error response carries a credential value: %s", clip(body))
				}
			}
			requireServing(t)
		})
	}

	t.Run("slowloris", func(t *testing.T) {
		n := sizes().slowloris
		var wg sync.WaitGroup
		closed := make(chan time.Duration, n)
		start := time.Now()
		for range n {
			c, err := net.DialTimeout("unix", a.socket, 5*time.Second)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.WriteString(c, "GET /v1/credentials/"+name+" HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
				// One byte every 500 ms, for at most 20 s: the server must
				// hang up first (its header read timeout).
				buf := make([]byte, 512)
				for range 40 {
					if _, err := c.Write([]byte("a")); err != nil {
						closed <- time.Since(start)
						return
					}
					_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					if _, err := c.Read(buf); err != nil && !isTimeout(err) {
						closed <- time.Since(start)
						return
					}
				}
			}()
		}
		// While they dribble, normal reads are served promptly.
		for range 10 {
			t0 := time.Now()
			requireServing(t)
			if d := time.Since(t0); d > time.Second {
				t.Errorf("a read took %s while %d slow connections were open", d, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
		wg.Wait()
		close(closed)
		var slowest time.Duration
		count := 0
		for d := range closed {
			count++
			slowest = max(slowest, d)
		}
		if count != n {
			t.Errorf("the server hung up on %d of %d slow connections within 20 s", count, n)
		} else {
			t.Logf("server closed all %d slow connections, the last after %s", n, slowest.Round(time.Millisecond))
		}
		requireServing(t)
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func clip(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s… (%d bytes)", s[:200], len(s))
	}
	return s
}
