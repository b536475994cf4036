package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/vault/api"
)

// DefaultMaxBody is the largest response body read when a client's MaxBody
// is 0.
const DefaultMaxBody = 1 << 20

// ErrBodyTooLarge is a response body over the reader's limit.
var ErrBodyTooLarge = errors.New("response body too large")

// ReadBody reads a response body of at most max bytes into one buffer the
// caller wipes. When the buffer must grow, the old one is wiped first, so
// no stray copy of the body is left behind. size is the announced length
// (-1: unknown).
func ReadBody(r io.Reader, size int64, max int) ([]byte, error) {
	if size > int64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBodyTooLarge, size, max)
	}
	n := 4096
	if size > 0 {
		n = int(size) + 1 // +1 to see EOF without growing
	}
	buf := make([]byte, 0, n)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= max+1 {
				clear(buf)
				return nil, fmt.Errorf("%w: limit %d", ErrBodyTooLarge, max)
			}
			nb := make([]byte, len(buf), min(2*cap(buf), max+1))
			copy(nb, buf)
			clear(buf)
			buf = nb
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err == io.EOF {
			if len(buf) > max {
				clear(buf)
				return nil, fmt.Errorf("%w: limit %d", ErrBodyTooLarge, max)
			}
			return buf, nil
		}
		if err != nil {
			clear(buf)
			return nil, err
		}
	}
}

// DecodeBody reads resp's body (at most max bytes) into v and wipes the
// read buffer. Values in v that alias no buffer (strings, numbers) are the
// caller's; byte slices in v are fresh copies the caller wipes.
func DecodeBody(resp *api.Response, max int, v any) error {
	body, err := ReadBody(resp.Body, resp.ContentLength, max)
	if err != nil {
		return err
	}
	defer clear(body)
	return json.Unmarshal(body, v)
}

// CloseBody drains a little of what is left (so the connection is reused)
// and closes the body. A nil response is fine.
func CloseBody(resp *api.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// WipeRaw zeroes every raw JSON value of a decoded KV secret.
func WipeRaw(raw map[string]json.RawMessage) {
	for _, r := range raw {
		clear(r)
	}
}
