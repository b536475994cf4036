package socketapi

import (
	"bufio"
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
	hdr  []byte // response head, reused

	mu   sync.Mutex
	idle bool // waiting for a request: shutdown may close it at once
}

// connReader feeds the bufio.Reader: a byte read by the long-poll watcher
// first, then the connection.
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

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, peer: s.peerOf(nc), hdr: make([]byte, 0, 256)}
	c.src.nc = nc
	c.r = bufio.NewReaderSize(&c.src, maxHeaderBytes)
	if !c.peer.allowed {
		if s.m != nil {
			s.m.SocketDenied.Inc()
		}
		s.log.Warn("socket peer not allowed", "peer_uid", c.peer.UID, "peer_gid", c.peer.GID, "peer_pid", c.peer.PID,
			"peer_known", c.peer.known)
	}
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
		_ = c.nc.SetReadDeadline(time.Now().Add(readHeaderTimeout))
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
		_ = c.nc.SetReadDeadline(time.Time{})
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
	_ = c.nc.SetReadDeadline(time.Now().Add(idleTimeout))
	return true
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
		_ = c.nc.SetReadDeadline(time.Now()) // interrupt the watcher
		r := <-res
		_ = c.nc.SetReadDeadline(time.Time{})
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
// body straight from where it lives (locked scratch for values), then wipes
// the scratch. It reports whether the connection may carry on.
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
	bufs := net.Buffers{h}
	if req.method != http.MethodHead && r.status != http.StatusNotModified && len(r.body) > 0 {
		bufs = append(bufs, r.body)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := bufs.WriteTo(c.nc); err != nil {
		return false
	}
	// Unread request bytes do not discard an answer on a Unix socket: a
	// close right after the write is safe.
	return !closeAfter
}

// releaseBody wipes and returns a scratch body.
func (s *Server) releaseBody(r *response) {
	if r.scratch != nil {
		s.scratch.put(r.scratch, len(r.body))
		r.scratch, r.body = nil, nil
	}
}
