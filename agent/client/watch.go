package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Watch delivers the current version of a credential set, then each new
// version as the agent commits it, until ctx ends; then the channel is
// closed. It long-polls the agent (?wait=VERSION), so a rotation arrives
// within milliseconds. Errors (the agent restarting, a set not fetched yet,
// even forbidden or not found) are logged and retried with the client's
// backoff (WithBackoff), so a watcher survives an agent restart. A slow receiver does not
// lose the newest version: Watch waits for it to take each one.
func (c *Client) Watch(ctx context.Context, name string) <-chan *Credential {
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
				failures++
				c.log.Warn("credlet watch: retrying", "credential", name, "error", err.Error(), "attempt", failures)
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
