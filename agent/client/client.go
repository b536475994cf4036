package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// DefaultSocket is where an injected pod's agent listens.
const DefaultSocket = "/credlet/run/agent.sock"

// Sentinel errors, matched with errors.Is.
var (
	ErrForbidden  = errors.New("credlet: this process may not read credentials from the agent")
	ErrNotFound   = errors.New("credlet: no such credential set")
	ErrNotReady   = errors.New("credlet: credential set not fetched yet")
	ErrBadRequest = errors.New("credlet: bad request")
)

// APIError is an error answer from the agent.
type APIError struct {
	Status  int    // HTTP status
	Code    string // forbidden, not_found, not_ready, bad_request, ...
	Message string // one line, from the agent
}

func (e *APIError) Error() string {
	return fmt.Sprintf("credlet agent: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is matches the sentinel errors by code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrForbidden:
		return e.Code == "forbidden" || e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Code == "not_found" || e.Status == http.StatusNotFound
	case ErrNotReady:
		return e.Code == "not_ready" || e.Status == http.StatusServiceUnavailable
	case ErrBadRequest:
		return e.Code == "bad_request" || e.Status == http.StatusBadRequest
	}
	return false
}

// Client talks to one agent. It is safe for concurrent use and keeps
// connections alive between requests.
type Client struct {
	socket      string
	http        *http.Client
	attempts    int
	backoffMin  time.Duration
	backoffMax  time.Duration
	timeout     time.Duration
	waitTimeout time.Duration
	log         *slog.Logger
}

// Option configures a Client.
type Option func(*Client)

// WithAttempts sets how many times Get, List and Health try before giving
// up on a transient error (default 9: with the default backoff that is 8 to
// 16 s of retrying, longer than the kubelet takes to restart a killed agent
// sidecar, about 4 s measured in test/pods; 5 tries, 0.75 to 1.5 s, let a
// connection refused reach the app there). Watch retries until its context
// ends.
func WithAttempts(n int) Option { return func(c *Client) { c.attempts = max(n, 1) } }

// WithBackoff sets the first and the longest pause between retries
// (default 100ms and 5s; each pause doubles, with jitter).
func WithBackoff(first, longest time.Duration) Option {
	return func(c *Client) { c.backoffMin, c.backoffMax = max(first, time.Millisecond), max(longest, first) }
}

// WithTimeout bounds each request other than a long poll (default 10s).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithWaitTimeout sets how long one long-poll request of Watch waits for a
// new version before asking again (default 60s; the agent caps it at 5m).
func WithWaitTimeout(d time.Duration) Option { return func(c *Client) { c.waitTimeout = d } }

// WithLogger sets where Watch reports the errors it retries (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// New returns a client for the agent listening on socketPath ("" means
// DefaultSocket). Nothing is dialled until the first request.
func New(socketPath string, opts ...Option) *Client {
	if socketPath == "" {
		socketPath = DefaultSocket
	}
	c := &Client{
		socket: socketPath, attempts: 9, backoffMin: 100 * time.Millisecond, backoffMax: 5 * time.Second,
		timeout: 10 * time.Second, waitTimeout: 60 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.http = &http.Client{
		Transport: &http.Transport{
			Proxy: nil, // never route credentials through an HTTP proxy
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", c.socket)
			},
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// Get returns the current version of a credential set.
func (c *Client) Get(ctx context.Context, name string) (*Credential, error) {
	var w wireCredential
	if _, err := c.retry(ctx, "/v1/credentials/"+url.PathEscape(name), &w); err != nil {
		return nil, err
	}
	return fromWire(w), nil
}

// List returns the names and versions of the agent's credential sets.
func (c *Client) List(ctx context.Context) ([]Info, error) {
	var out struct {
		Credentials []Info `json:"credentials"`
	}
	if _, err := c.retry(ctx, "/v1/credentials", &out); err != nil {
		return nil, err
	}
	return out.Credentials, nil
}

// Health returns the agent's readiness and each set's state.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	if _, err := c.retry(ctx, "/v1/health", &h); err != nil {
		return nil, err
	}
	return &h, nil
}

func fromWire(w wireCredential) *Credential {
	return &Credential{Name: w.Name, Version: w.Version, Fields: w.Fields, FetchedAt: w.FetchedAt, ExpiresAt: w.ExpiresAt}
}

// retry runs get until it succeeds, fails for good, runs out of attempts or
// ctx ends. When ctx ends during a retry, the error wraps both ctx's error
// and the last answer (errors.Is matches ErrNotReady and
// context.DeadlineExceeded).
func (c *Client) retry(ctx context.Context, path string, out any) (int, error) {
	var last error
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		status, err := c.get(rctx, path, out)
		cancel()
		if err == nil || !transient(err) || attempt >= c.attempts {
			return status, err
		}
		if ctx.Err() != nil {
			if last != nil {
				return status, fmt.Errorf("%w; last answer: %w", ctx.Err(), last)
			}
			return status, err
		}
		last = err
		if c.sleep(ctx, attempt) != nil {
			return status, fmt.Errorf("%w; last answer: %w", ctx.Err(), last)
		}
	}
}

// transient reports whether trying again may help.
func transient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusServiceUnavailable || ae.Status >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, errDecode)
}

// sleep waits the backoff for the attempt-th retry, or until ctx ends.
func (c *Client) sleep(ctx context.Context, attempt int) error {
	d := c.backoffMin << min(attempt-1, 30)
	if d <= 0 || d > c.backoffMax {
		d = c.backoffMax
	}
	d = d/2 + rand.N(d/2+1) // jitter: [d/2, d]
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var errDecode = errors.New("credlet: unreadable answer from the agent")

const maxBody = 1 << 20

// get does one GET. A 304 answers (304, nil) and leaves out untouched.
func (c *Client) get(ctx context.Context, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://credlet-agent"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("credlet agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxBody)
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return resp.StatusCode, nil
	case resp.StatusCode == http.StatusOK:
		if err := json.NewDecoder(body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%w: %v", errDecode, err)
		}
		return resp.StatusCode, nil
	}
	ae := &APIError{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Message: resp.Status}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.NewDecoder(body).Decode(&e) == nil && e.Error.Code != "" {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	}
	return resp.StatusCode, ae
}
