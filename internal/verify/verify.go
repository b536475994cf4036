package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/store"
)

// DefaultTimeout bounds one check.
const DefaultTimeout = 5 * time.Second

// ErrRejected is wrapped when the hook answers with a non-2xx status.
var ErrRejected = errors.New("candidate version rejected by the verify hook")

// ErrNotLoopback is wrapped when a hook URL or a connection would leave
// the host.
var ErrNotLoopback = credspec.ErrNotLoopback

// Options configure the check.
type Options struct {
	Timeout time.Duration // per check; 0: DefaultTimeout
	Logger  *slog.Logger
}

// HTTP checks candidates against an HTTP hook. It satisfies
// source.Verifier.
type HTTP struct {
	url     string // the request URL (http://unix/ for a socket)
	display string // for messages
	timeout time.Duration
	client  *http.Client
	log     *slog.Logger
}

// New validates the hook URL and returns a verifier for it.
func New(rawURL string, opts Options) (*HTTP, error) {
	h := &HTTP{display: rawURL, timeout: opts.Timeout, log: opts.Logger}
	if h.timeout <= 0 {
		h.timeout = DefaultTimeout
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:               nil, // the body holds secrets: never through a proxy
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	target, err := credspec.ParseVerifyURL(rawURL)
	if err != nil {
		return nil, err
	}
	if path := target.UnixPath; path != "" {
		h.url = "http://unix/"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	} else {
		h.url = target.URL
		d := &net.Dialer{Control: loopbackOnly}
		tr.DialContext = d.DialContext
	}
	h.client = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h, nil
}

// loopbackOnly refuses, at connect time, any address that is not loopback
// (localhost resolving elsewhere, for instance).
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", ErrNotLoopback, address)
	}
	return nil
}

// Verify POSTs the candidate and reports whether the hook accepted it. The
// error never holds a value.
func (h *HTTP) Verify(ctx context.Context, name string, version int, fields map[string][]byte) error {
	body, n, err := encode(name, version, fields)
	if err != nil {
		return fmt.Errorf("verify %s: %w", h.display, err)
	}
	defer body.Free()
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body.Bytes()[:n]))
	if err != nil {
		return fmt.Errorf("verify %s: %w", h.display, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "credlet-agent")
	start := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named once, below
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("verify %s: no answer within %s: %w", h.display, h.timeout, err)
		}
		return fmt.Errorf("verify %s: %w", h.display, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // the hook's body is never logged: it might echo values
	resp.Body.Close()
	h.log.Debug("verify hook answered", "credential", name, "version", version, "status", resp.StatusCode,
		"duration_ms", time.Since(start).Milliseconds())
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("verify %s: %w: status %d", h.display, ErrRejected, resp.StatusCode)
	}
	return nil
}

// encode builds {"name","version","fields":{...}} in locked memory.
func encode(name string, version int, fields map[string][]byte) (*securemem.Buffer, int, error) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ver := strconv.Itoa(version)
	n := len(`{"name":,"version":,"fields":{}}`) + store.JSONStringLen([]byte(name)) + len(ver)
	for i, k := range keys {
		if i > 0 {
			n++
		}
		n += store.JSONStringLen([]byte(k)) + 1 + store.JSONStringLen(fields[k])
	}
	buf, err := securemem.New(n)
	if err != nil {
		return nil, 0, err
	}
	w := buf.Writer(n)
	_, _ = io.WriteString(w, `{"name":`)
	_ = store.WriteJSONString(w, []byte(name))
	_, _ = io.WriteString(w, `,"version":`+ver+`,"fields":{`)
	for i, k := range keys {
		if i > 0 {
			_, _ = io.WriteString(w, ",")
		}
		_ = store.WriteJSONString(w, []byte(k))
		_, _ = io.WriteString(w, ":")
		_ = store.WriteJSONString(w, fields[k])
	}
	_, _ = io.WriteString(w, "}}")
	if w.Err() != nil || len(w.Bytes()) != n {
		buf.Free()
		return nil, 0, fmt.Errorf("encoding the candidate: not the %d bytes computed: %v", n, w.Err())
	}
	return buf, n, nil
}
