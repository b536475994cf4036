package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// conn is one keep-alive HTTP/1.1 connection that sends prepared request
// bytes. The same minimal client drives every target (Unix socket, TCP,
// TLS), so client overhead is equal for credlet and its anchors.
type conn struct {
	dial func() (net.Conn, error)
	c    net.Conn
	br   *bufio.Reader
	body bytes.Buffer
	// redials counts reconnects after the server closed an idle connection.
	redials int
}

func newConn(dial func() (net.Conn, error)) *conn { return &conn{dial: dial} }

func (h *conn) close() {
	if h.c != nil {
		_ = h.c.Close()
		h.c = nil
	}
}

// do sends req and reads the whole response. The body stays valid until the
// next call. A connection the server closed while idle is redialled once.
func (h *conn) do(req []byte) (int, []byte, error) {
	status, body, err := h.try(req)
	if err != nil && h.c == nil && isStale(err) {
		h.redials++
		status, body, err = h.try(req)
	}
	return status, body, err
}

func (h *conn) try(req []byte) (int, []byte, error) {
	if h.c == nil {
		c, err := h.dial()
		if err != nil {
			return 0, nil, fmt.Errorf("dial: %w", err)
		}
		h.c = c
		if h.br == nil {
			h.br = bufio.NewReaderSize(c, 16<<10)
		} else {
			h.br.Reset(c)
		}
	}
	// A server that stops answering fails the request instead of hanging
	// the run.
	_ = h.c.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := h.c.Write(req); err != nil {
		h.close()
		return 0, nil, fmt.Errorf("write: %w", err)
	}
	status, closeAfter, err := h.readResponse()
	if err != nil {
		h.close()
		return 0, nil, err
	}
	if closeAfter {
		h.close()
	}
	return status, h.body.Bytes(), nil
}

// readResponse reads one HTTP/1.1 response into h.body: the status line,
// the headers it needs (Content-Length, Transfer-Encoding, Connection) and
// the body. Lean on purpose (no header map, no allocation per response):
// net/http's ReadResponse cost more CPU than the socket read it measured,
// on the same two cores. It reports whether the server closes after it.
func (h *conn) readResponse() (status int, closeAfter bool, err error) {
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return 0, false, fmt.Errorf("read response: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("read response: bad status line %.40q", line)
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, fmt.Errorf("read response: bad status line %.40q", line)
		}
		status = status*10 + int(c-'0')
	}
	length, chunked := -1, false
	for {
		line, err = h.br.ReadSlice('\n')
		if err != nil {
			return 0, false, fmt.Errorf("read response head: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("read response head: bad line %.40q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("content-length")):
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 0 {
				return 0, false, fmt.Errorf("read response head: Content-Length %.20q", v)
			}
			length = n
		case bytes.EqualFold(k, []byte("transfer-encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("connection")):
			closeAfter = bytes.EqualFold(v, []byte("close"))
		}
	}
	h.body.Reset()
	switch {
	case status == http.StatusNotModified || status == http.StatusNoContent || status < 200:
	case chunked:
		_, err = h.body.ReadFrom(httputil.NewChunkedReader(h.br))
		for err == nil { // the trailer, up to its empty line
			if line, err = h.br.ReadSlice('\n'); len(bytes.TrimSpace(line)) == 0 {
				break
			}
		}
	case length >= 0:
		h.body.Grow(length)
		_, err = io.ReadFull(h.br, h.body.AvailableBuffer()[:length])
		if err == nil {
			h.body.Write(h.body.AvailableBuffer()[:length]) // already in place: no copy
		}
	default: // body until the server closes
		_, err = h.body.ReadFrom(h.br)
		closeAfter = true
	}
	if err != nil {
		return 0, false, fmt.Errorf("read body: %w", err)
	}
	return status, closeAfter, nil
}

func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// requestTimeout bounds one request on a load connection.
const requestTimeout = 30 * time.Second

// getRequest builds a GET with optional extra header lines ("K: V").
func getRequest(path string, headers ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: credlet-bench\r\n", path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// postRequest builds a POST of a JSON body.
func postRequest(path string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: credlet-bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body))
	b.Write(body)
	return b.Bytes()
}

// loadSpec is one closed-loop load run: clients connections, each sending
// the next request as soon as the last answered.
type loadSpec struct {
	name    string
	clients int
	warmup  int // requests per client not recorded
	total   int // recorded requests over all clients
	maxTime time.Duration
	dial    func() (net.Conn, error)
	request []byte
	// vary, when set, gives the request for the n-th send instead (n counts
	// every request of the run, warm-up included).
	vary func(n int64) []byte
	// check validates a response; a non-nil error counts as a failed request.
	check func(status int, body []byte) error
}

// loadResult holds every recorded latency, sorted.
type loadResult struct {
	name      string
	lat       []time.Duration
	errors    int
	firstErr  string
	elapsed   time.Duration
	redials   int
	truncated bool // maxTime ended the run before total
}

func (r loadResult) perSecond() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(len(r.lat)) / r.elapsed.Seconds()
}

func (r loadResult) p(q float64) time.Duration { return percentile(r.lat, q) }

// runLoad runs spec. Warm-up requests go first on every client; the
// measured phase starts when all clients have warmed up.
func runLoad(ctx context.Context, spec loadSpec) loadResult {
	res := loadResult{name: spec.name}
	var (
		next    atomic.Int64
		errs    atomic.Int64
		errOnce sync.Once
		ready   sync.WaitGroup
		done    sync.WaitGroup
		mu      sync.Mutex
		all     = make([]time.Duration, 0, spec.total)
	)
	start := make(chan struct{})
	deadline := time.Now().Add(spec.maxTime)
	fail := func(err error) {
		errs.Add(1)
		errOnce.Do(func() { res.firstErr = err.Error() })
	}
	ready.Add(spec.clients)
	done.Add(spec.clients)
	var redials, sends atomic.Int64
	for range spec.clients {
		go func() {
			defer done.Done()
			c := newConn(spec.dial)
			defer func() { redials.Add(int64(c.redials)); c.close() }()
			one := func() (time.Duration, bool) {
				req := spec.request
				if spec.vary != nil {
					req = spec.vary(sends.Add(1))
				}
				t0 := time.Now()
				status, body, err := c.do(req)
				d := time.Since(t0)
				if err == nil && spec.check != nil {
					err = spec.check(status, body)
				}
				if err != nil {
					fail(err)
					return d, false
				}
				return d, true
			}
			warmEnd := time.Now().Add(spec.maxTime)
			for range spec.warmup {
				if ctx.Err() != nil || time.Now().After(warmEnd) {
					break
				}
				one()
			}
			ready.Done()
			<-start
			own := make([]time.Duration, 0, spec.total/spec.clients+1)
			for next.Add(1) <= int64(spec.total) {
				if ctx.Err() != nil || time.Now().After(deadline) {
					break
				}
				if d, ok := one(); ok {
					own = append(own, d)
				}
			}
			mu.Lock()
			all = append(all, own...)
			mu.Unlock()
		}()
	}
	ready.Wait()
	t0 := time.Now()
	deadline = t0.Add(spec.maxTime)
	close(start)
	done.Wait()
	res.elapsed = time.Since(t0)
	slices.Sort(all)
	res.lat = all
	res.errors = int(errs.Load())
	res.redials = int(redials.Load())
	res.truncated = len(all)+res.errors < spec.total
	return res
}

// percentile is the nearest-rank q-quantile (0 < q ≤ 1) of sorted samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// statusIs returns a check accepting status want whose body holds every
// needle.
func statusIs(want int, needles ...[]byte) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != want {
			return fmt.Errorf("status %d, want %d: %.200s", status, want, body)
		}
		for _, n := range needles {
			if !bytes.Contains(body, n) {
				return fmt.Errorf("status %d but the body lacks the expected value (%d bytes)", status, len(body))
			}
		}
		return nil
	}
}

func unixDialer(path string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.DialTimeout("unix", path, 5*time.Second) }
}

func tcpDialer(addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
}
