package socketapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// conn serves the requests of one connection, one at a time (pipelined
// requests wait their turn).
type conn struct {
	s    *Server
	nc   net.Conn
	peer peer
	src  connReader
	r    *bufio.Reader
	hdr  []byte    // response head, reused
	iov  [2][]byte // head and body for writev, reused
	wv   net.Buffers

	// The deadlines armed on nc (zero: none), owned by serve's goroutine.
	readDeadline, writeDeadline time.Time

	mu   sync.Mutex
	idle bool // waiting for a request: shutdown may close it at once
}

// connReader feeds the bufio.Reader: a byte read by the long-poll watcher
// first, then the connection.
//
// (Tried and dropped: skipping the read that fails with EAGAIN after each
// answer by waiting on the poller first through syscall.RawConn. RawConn's
// Read resets the poller's readiness before it waits, so a request that
// arrived in between was not seen until the idle deadline.)
type connReader struct {
	nc      net.Conn
	pending []byte
}

func (c *connReader) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.nc.Read(p)
}

func (s *Server) newConn(nc net.Conn, p peer) *conn {
	c := &conn{s: s, nc: nc, peer: p, hdr: make([]byte, 0, 256)}
	c.src.nc = nc
	c.r = bufio.NewReaderSize(&c.src, maxHeaderBytes)
	return c
}

// serve reads requests and answers them until the client closes, a request
// asks to close, an error, or ctx ends (then open long polls are answered
// 503 and idle connections closed).
func (c *conn) serve(ctx context.Context) {
	defer c.nc.Close()
	var req httpRequest
	for {
		if !c.waitIdle(ctx) {
			return
		}
		if _, err := c.r.Peek(1); err != nil {
			return // closed, idle too long, or shutting down
		}
		c.setIdle(false)
		if !c.headBuffered() {
			// The head came in pieces: the rest must follow soon.
			c.setReadDeadline(time.Now().Add(readHeaderTimeout))
		}
		err := readRequest(c.r, &req)
		if err != nil {
			var bad *errBadRequest
			switch {
			case errors.As(err, &bad):
				c.write(&req, c.s.fail(badRequest("%s", bad.msg)), true)
			case errors.Is(err, errHeadTooLong):
				c.write(&req, c.s.fail(&apiError{http.StatusRequestHeaderFieldsTooLarge, "bad_request",
					"request head longer than " + strconv.Itoa(maxHeaderBytes) + " bytes"}), true)
			}
			return
		}
		rctx, stop := c.watch(ctx, &req)
		resp := c.s.handle(rctx, &req, c.peer)
		gone := stop()
		if gone {
			c.s.releaseBody(&resp)
			return
		}
		if !c.write(&req, resp, req.close || req.hasBody || resp.close || ctx.Err() != nil) {
			return
		}
	}
}

// waitIdle marks the connection idle and arms the idle timeout, unless the
// server is shutting down. closeIfIdle, called after ctx ends, takes the
// same lock, so one of the two always sees the other.
func (c *conn) waitIdle(ctx context.Context) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	c.idle = true
	c.extendReadDeadline(idleTimeout)
	return true
}

// Deadlines. Moving a deadline is a runtime timer update, and a request
// would move one three or four times (idle, head, write), which showed
// up in the read benchmark. So the connection remembers what is armed and
// only moves a deadline when it matters: the idle and write deadlines are
// pushed forward at most once per deadlineSlack (they fire up to that much
// early, never late), and the head deadline is armed only when a head did
// not arrive in one piece.
const deadlineSlack = time.Second

func (c *conn) setReadDeadline(t time.Time) {
	c.readDeadline = t
	_ = c.nc.SetReadDeadline(t)
}

// extendReadDeadline makes the read deadline about d from now.
func (c *conn) extendReadDeadline(d time.Duration) {
	want := time.Now().Add(d)
	if c.readDeadline.IsZero() || c.readDeadline.Before(want.Add(-deadlineSlack)) || c.readDeadline.After(want) {
		c.setReadDeadline(want)
	}
}

// extendWriteDeadline makes the write deadline about d from now.
func (c *conn) extendWriteDeadline(d time.Duration) {
	want := time.Now().Add(d)
	if c.writeDeadline.IsZero() || c.writeDeadline.Before(want.Add(-deadlineSlack)) {
		c.writeDeadline = want
		_ = c.nc.SetWriteDeadline(want)
	}
}

// headBuffered reports whether a whole request head is already buffered,
// so reading it needs no further read from the connection.
func (c *conn) headBuffered() bool {
	b, _ := c.r.Peek(c.r.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

func (c *conn) setIdle(idle bool) {
	c.mu.Lock()
	c.idle = idle
	c.mu.Unlock()
}

// closeIfIdle closes the connection if it is waiting for a request.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

// watch returns the context a request is handled under. For a long poll it
// also ends when the client hangs up: a goroutine reads the next byte while
// the request waits (a pipelined request's first byte is kept). stop ends
// the watch and reports whether the client is gone.
func (c *conn) watch(ctx context.Context, req *httpRequest) (context.Context, func() (gone bool)) {
	if !isLongPoll(req) || c.r.Buffered() > 0 {
		return ctx, func() bool { return false }
	}
	// The watcher waits as long as the poll does: no idle deadline.
	c.setReadDeadline(time.Time{})
	wctx, cancel := context.WithCancel(ctx)
	type result struct {
		b   byte
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		var b [1]byte
		n, err := c.nc.Read(b[:])
		res <- result{b[0], n, err}
		if n == 0 {
			cancel() // EOF or error: nobody to answer
		}
	}()
	return wctx, func() bool {
		defer cancel()
		c.setReadDeadline(time.Now()) // interrupt the watcher
		r := <-res
		c.setReadDeadline(time.Time{})
		if r.n == 1 {
			c.src.pending = append(c.src.pending[:0], r.b)
			return false
		}
		var ne net.Error
		if errors.As(r.err, &ne) && ne.Timeout() {
			return false // interrupted by us: the client is still there
		}
		return true
	}
}

func isLongPoll(req *httpRequest) bool {
	return req.method == http.MethodGet && strings.Contains(req.rawQuery, "wait=")
}

// write sends the answer in one writev: the head from ordinary memory, the
// body straight from where it lives (a version's locked rendering for
// values), then lets go of the version. It reports whether the connection
// may carry on.
func (c *conn) write(req *httpRequest, r response, closeAfter bool) bool {
	defer c.s.releaseBody(&r)
	c.s.count(r.status)
	length := len(r.body)
	if r.body == nil {
		length = r.length
	}
	h := c.hdr[:0]
	h = append(h, "HTTP/1.1 "...)
	h = strconv.AppendInt(h, int64(r.status), 10)
	h = append(h, ' ')
	h = append(h, http.StatusText(r.status)...)
	h = append(h, "\r\nCache-Control: no-store\r\n"...)
	if r.json {
		h = append(h, "Content-Type: application/json\r\n"...)
	}
	if r.etag > 0 {
		h = append(h, "Etag: \""...)
		h = strconv.AppendInt(h, int64(r.etag), 10)
		h = append(h, "\"\r\n"...)
	}
	if r.allow {
		h = append(h, "Allow: GET, HEAD\r\n"...)
	}
	if r.status != http.StatusNotModified {
		h = append(h, "Content-Length: "...)
		h = strconv.AppendInt(h, int64(length), 10)
		h = append(h, "\r\n"...)
	}
	if closeAfter {
		h = append(h, "Connection: close\r\n"...)
	}
	h = append(h, "\r\n"...)
	c.hdr = h
	c.iov[0], c.iov[1] = h, nil
	c.wv = c.iov[:1]
	if req.method != http.MethodHead && r.status != http.StatusNotModified && len(r.body) > 0 {
		c.wv = append(c.wv, r.body)
	}
	defer func() { c.iov[1], c.wv = nil, nil }() // no reference to a released body
	c.extendWriteDeadline(writeTimeout)
	if _, err := c.wv.WriteTo(c.nc); err != nil {
		return false
	}
	// Unread request bytes do not discard an answer on a Unix socket: a
	// close right after the write is safe.
	return !closeAfter
}

// releaseBody lets go of the version a body belongs to.
func (s *Server) releaseBody(r *response) {
	if r.set != nil {
		r.set.Release()
		r.set, r.body = nil, nil
	}
}
