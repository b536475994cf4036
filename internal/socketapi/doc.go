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
// 404 not_found, 405 method_not_allowed, 503 not_ready. HEAD is answered
// like GET without a body; other methods get 405.
//
// Who may call: the socket is created mode 0600 (fchmod before bind), then
// opened to 0660, inside a directory of mode 0750. Each connection's
// SO_PEERCRED is read once (ConnContext); a peer whose UID is not in
// AllowUIDs and whose GID is not in AllowGIDs gets 403 on every request, an
// audit "deny" record per request, and counts once in
// credlet_socket_denied_total per connection. Requests carrying an Origin or
// Referer header (a browser somehow reaching the socket) get 403 too; so do
// requests with a body (400). An existing socket file is probed before it is
// unlinked: if another process answers, Run fails rather than steal it.
//
// Time: ReadHeaderTimeout bounds slow clients; there is deliberately no
// ReadTimeout, because net/http turns it into a cancellation of every
// long poll outlasting it. A long poll's timeout is capped at MaxWait (5m).
//
// Secrets: a credential response is written by hand, straight from the
// store's locked views into the connection's write buffer (no Go string of
// a value, no encoding/json map). Those net/http buffers (per connection,
// pooled) are the only copies, overwritten by later responses. Values never
// reach logs, metrics or audit records.
package socketapi
