// Package client reads credentials from a credlet agent over its Unix
// socket (CREDLET_SOCKET in an injected pod, /credlet/run/agent.sock by
// default).
//
//	c := client.New(os.Getenv("CREDLET_SOCKET"))
//	cred, err := c.Get(ctx, "zerodha")       // the current version
//	for cred := range c.Watch(ctx, "zerodha") { ... } // each new version, as it is committed
//
// Errors match ErrForbidden (this process's UID/GID is not allowed), ErrNotFound
// (no such credential set), ErrNotReady (not fetched yet) and ErrBadRequest
// with errors.Is; *APIError carries the agent's code and message. Transient
// failures (the agent restarting, a refused connection, not ready yet) are
// retried with exponential backoff and jitter, within the context.
//
// Watch retries transient failures for as long as its context lasts, but
// stops on a permanent one (forbidden, not found, bad request), closing its
// channel; OnError lets the caller hear of every error, the last one
// wrapping ErrWatchStopped:
//
//	updates := c.Watch(ctx, "zerodha", client.OnError(func(err error) {
//		if errors.Is(err, client.ErrWatchStopped) { ... } // will never deliver: alert, exit
//	}))
//
// A Credential's String, GoString, Format (every fmt verb), LogValue and
// MarshalJSON print [REDACTED] instead of values, so logging one by mistake
// leaks nothing; read values with Field or the Fields map.
package client
