// Package socketapi owns the agent's Unix socket: HTTP/1.1 for the apps in
// the pod (trading bots) to read their credentials.
//
// Endpoints (see INTERFACE.md):
//
//	GET /v1/credentials                          {"credentials":[{"name","version","fetched_at"}]}
//	GET /v1/credentials/{name}                   {"name","version","fields":{...},"fetched_at","expires_at"?}, ETag "<version>"
//	GET /v1/credentials/{name}?wait=V&timeout=D  long poll: answers at once when the version is not V,
//	                                             else when a new version is committed, or 304 after D
//	GET /v1/health                               {"ready","credentials":{name:{"version","age_seconds"?,"last_error"?}}}
//
// Errors are {"error":{"code","message"}}: 400 bad_request, 403 forbidden,
// 404 not_found, 405 method_not_allowed, 503 not_ready, 503 busy (past a
// cap, below). HEAD is answered like GET without a body; other methods get
// 405.
//
// Who may call: the socket is created mode 0600 (fchmod before bind), then
// opened to 0660, inside a directory of mode 0750. Each connection's
// SO_PEERCRED is read once, at accept; a peer whose UID is not in AllowUIDs
// and whose primary GID is not in AllowGIDs is refused there and then: it
// never gets a served connection's goroutine or buffers. It counts once in
// credlet_socket_denied_total per connection, and gets an audit "deny"
// record and a log line per (uid, gid) at once, repeats summarised with a
// count once a minute (audit.Logger.ObserveDeny). While fewer than 16
// refused connections are pending, one is given a second to send its
// request and is answered 403 with the reason; past that, or after the
// second, it is closed unanswered. So a peer opening thousands of
// connections holds at most 16 descriptors for a second each.
//
// Caps: at most MaxConns connections (1024) are served at once, MaxConnsPerUID
// (256) of one peer UID, and MaxLongPolls (512) long polls wait at once.
// Past a connection cap a new connection is turned away like a refused one
// but answered 503 busy; past the long-poll cap a long poll is answered
// 503 busy at once. Out of descriptors, accept backs off (5ms doubling to
// 1s) while the context lasts. Requests carrying an Origin
// or Referer header (a browser somehow reaching the socket) get 403 too;
// requests with a body get 400 and the connection closed. An existing
// socket file is probed before it is unlinked: if another process answers,
// Run fails rather than steal it.
//
// HTTP: a small, strict HTTP/1.1 server (keep-alive, pipelining, HTTP/1.0),
// not net/http. Clients are local programs, so anything unusual (a body,
// obsolete line folding, a target that is not a path, a head over 8 KiB or
// 64 fields, a line ending in a bare LF, an HTTP/1.1 request without
// exactly one Host, an encoded '/' (%2F) in the path) is answered 400 or
// 431 and the connection closed. Timeouts: 5s
// from a request's first byte to the end of its head, 2m idle between
// requests, 30s to write an answer; a long poll's timeout is capped at
// MaxWait (5m), and a long poll ends early if its client hangs up.
//
// Why not net/http: its per-connection, pooled write buffers kept a copy of
// every answer, so the plaintext copies in the agent's memory grew with the
// number of connections (45 after 100,000 reads over 8 connections, 0
// before); it also spent twice the CPU per read. Here each version's answer
// is rendered once, on its first read, from the store's locked views into a
// locked buffer the version owns (store.Set.Rendered), and every read of
// that version is one writev(2) of the head and that buffer; the buffer is
// wiped and freed with the version. No Go heap copy of a value at any point.
// Values never reach logs, metrics or audit records.
package socketapi
