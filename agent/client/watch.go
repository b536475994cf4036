package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ErrWatchStopped is wrapped by the error a Watch reports when it stops
// for good: one that asking again cannot cure (errors.Is also matches
// ErrForbidden, ErrNotFound or ErrBadRequest, or the answer was
// unreadable).
var ErrWatchStopped = errors.New("credlet: watch stopped")

// WatchOption configures one Watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	onError func(error)
}

// OnError sets a function Watch calls with every error it meets, from the
// watch's goroutine: transient ones (the agent restarting, a set not
// fetched yet), after which it retries, and the permanent one that stops
// it, which wraps ErrWatchStopped. Keep it quick: the watch waits for it.
func OnError(f func(error)) WatchOption { return func(o *watchOptions) { o.onError = f } }

// Watch delivers the current version of a credential set, then each new
// version as the agent commits it, until ctx ends or a permanent error;
// then the channel is closed. It long-polls the agent (?wait=VERSION), so
// a rotation arrives within milliseconds. Transient errors (the agent
// restarting, a set not fetched yet) are retried with the client's backoff
// (WithBackoff), so a watcher survives an agent restart. Permanent errors
// (forbidden, not found, a bad request, an unreadable answer) end the
// watch: this process may not read the set, or the agent has no such set,
// and asking again will not change that. Every error is logged and, with
// OnError, reported to the caller. A slow receiver does not lose the
// newest version: Watch waits for it to take each one.
func (c *Client) Watch(ctx context.Context, name string, opts ...WatchOption) <-chan *Credential {
	var o watchOptions
	for _, f := range opts {
		f(&o)
	}
	ch := make(chan *Credential)
	go func() {
		defer close(ch)
		path := "/v1/credentials/" + url.PathEscape(name) + "?timeout=" + strconv.Itoa(max(int(c.waitTimeout/time.Second), 1)) + "&wait="
		last, failures := 0, 0
		for ctx.Err() == nil {
			var w wireCredential
			rctx, cancel := context.WithTimeout(ctx, c.waitTimeout+c.timeout)
			status, err := c.get(rctx, path+strconv.Itoa(last), &w)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !transient(err) {
					err = fmt.Errorf("%w: credential %q: %w", ErrWatchStopped, name, err)
					c.log.Error("credlet watch: stopped", "credential", name, "error", err.Error())
					if o.onError != nil {
						o.onError(err)
					}
					return
				}
				failures++
				c.log.Warn("credlet watch: retrying", "credential", name, "error", err.Error(), "attempt", failures)
				if o.onError != nil {
					o.onError(err)
				}
				if c.sleep(ctx, failures) != nil {
					return
				}
				continue
			}
			failures = 0
			if status == http.StatusNotModified {
				continue
			}
			last = w.Version
			select {
			case ch <- fromWire(w):
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
