package socketapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// A strict HTTP/1.1 request reader for the few requests this API serves.
// Clients are local programs (Go's net/http, Python's http.client, curl), so
// anything unusual is refused with 400 and the connection closed, rather
// than interpreted: no bodies, no obsolete line folding, origin-form
// targets only, a bounded head, CRLF line endings only (a bare LF is
// refused), exactly one Host field on HTTP/1.1, and no encoded '/' (%2F)
// in the path, which is routed on its decoded form: a program in front of
// the socket can never see a different request than credlet does.

const (
	maxHeaderBytes = 8 << 10 // request line and headers together
	maxHeaders     = 64
)

// httpRequest is the part of a request the API looks at.
type httpRequest struct {
	method      string
	path        string // percent-decoded; it held no %2F
	rawQuery    string
	http10      bool
	close       bool   // Connection: close (or HTTP/1.0 without keep-alive)
	origin      bool   // an Origin or Referer header was sent
	hasBody     bool   // Content-Length other than 0, or Transfer-Encoding
	ifNoneMatch string // If-None-Match, joined
}

// errBadRequest is a malformed request head; the message says what.
type errBadRequest struct{ msg string }

func (e *errBadRequest) Error() string { return e.msg }

func badHead(format string, args ...any) error {
	return &errBadRequest{fmt.Sprintf(format, args...)}
}

// readRequest reads one request head. io.EOF before the first byte means
// the client closed the connection between requests.
func readRequest(r *bufio.Reader, req *httpRequest) error {
	*req = httpRequest{}
	budget := maxHeaderBytes
	line, err := readLine(r, &budget)
	if err != nil {
		return err
	}
	// Tolerate one empty line before a request (RFC 9112 2.2).
	if len(line) == 0 {
		if line, err = readLine(r, &budget); err != nil {
			return err
		}
	}
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || !isToken(method) {
		return badHead("malformed request line")
	}
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		req.http10, req.close = true, true
	default:
		return badHead("unsupported protocol %q: HTTP/1.1 or HTTP/1.0", clip(string(proto)))
	}
	req.method = method2string(method)
	if len(target) == 0 || target[0] != '/' {
		return badHead("request target must be a path such as /v1/credentials")
	}
	path, query, _ := bytes.Cut(target, []byte("?"))
	if bytes.IndexByte(path, '%') >= 0 {
		if hasEncodedSlash(path) {
			return badHead("encoded '/' (%%2F) in the path: write path separators as '/'")
		}
		p, err := url.PathUnescape(string(path))
		if err != nil {
			return badHead("bad escaping in the path")
		}
		req.path = p
	} else {
		req.path = string(path)
	}
	req.rawQuery = string(query)
	var inm []string
	hosts := 0
	for n := 0; ; n++ {
		line, err := readLine(r, &budget)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		if n >= maxHeaders {
			return badHead("more than %d header fields", maxHeaders)
		}
		if line[0] == ' ' || line[0] == '\t' {
			return badHead("obsolete header line folding")
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || !isToken(name) {
			return badHead("malformed header field")
		}
		value = bytes.TrimSpace(value)
		switch {
		case equalFold(name, "content-length"):
			if len(bytes.TrimLeft(value, "0")) != 0 || len(value) == 0 {
				req.hasBody = true
			}
		case equalFold(name, "transfer-encoding"):
			req.hasBody = true
		case equalFold(name, "connection"):
			for tok := range strings.SplitSeq(string(value), ",") {
				switch strings.ToLower(strings.TrimSpace(tok)) {
				case "close":
					req.close = true
				case "keep-alive":
					if req.http10 {
						req.close = false
					}
				}
			}
		case equalFold(name, "origin"), equalFold(name, "referer"):
			req.origin = true
		case equalFold(name, "if-none-match"):
			inm = append(inm, string(value))
		case equalFold(name, "host"):
			hosts++
		}
	}
	switch {
	case hosts > 1:
		return badHead("more than one Host header field")
	case hosts == 0 && !req.http10:
		return badHead("HTTP/1.1 request without a Host header field")
	}
	req.ifNoneMatch = strings.Join(inm, ",")
	return nil
}

var errHeadTooLong = errors.New("request head too long")

// readLine reads one line without its CRLF, charging it to the head's byte
// budget. A line ending in a bare LF is refused.
func readLine(r *bufio.Reader, budget *int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errHeadTooLong
	}
	if err != nil {
		if len(line) > 0 && errors.Is(err, io.EOF) {
			return nil, badHead("request head cut short")
		}
		return nil, err
	}
	*budget -= len(line)
	if *budget < 0 {
		return nil, errHeadTooLong
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, badHead("line ending without CR: lines end in CRLF")
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, 0) >= 0 || bytes.IndexByte(line, '\r') >= 0 {
		return nil, badHead("control character in the request head")
	}
	return line, nil
}

// hasEncodedSlash reports whether a raw path holds %2F or %2f.
func hasEncodedSlash(p []byte) bool {
	for i := bytes.IndexByte(p, '%'); i >= 0 && i+2 < len(p); {
		if p[i+1] == '2' && (p[i+2] == 'F' || p[i+2] == 'f') {
			return true
		}
		j := bytes.IndexByte(p[i+1:], '%')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// tokenChars are RFC 9110 tchar.
var tokenChars = func() (t [256]bool) {
	for _, c := range []byte("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// equalFold compares an ASCII header name with a lower-case constant.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// method2string avoids an allocation for the common methods.
func method2string(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	}
	return string(m)
}
