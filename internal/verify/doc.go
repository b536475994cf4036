// Package verify owns the blue/green check (--verify-url): before a new
// credential version is published, the candidate is POSTed to a hook the app
// serves, which tries it against the broker. A 2xx answer publishes it; any
// other answer, a timeout (5s by default) or a connection failure keeps the
// old version live, and the source retries at its next refresh.
//
// The request carries the candidate's values, so the hook must be in the
// pod: the URL must be plain http to a loopback address (127.0.0.0/8, ::1,
// localhost) or unix:/path/to.sock (POST / over that socket). The check is
// enforced where the connection is made, whatever a name resolves to, and
// no HTTP proxy is ever used. Redirects are not followed.
//
// Body: {"name":"zerodha","version":3,"fields":{"api_key":"...",...}}. It is
// encoded from the candidate's views into a securemem buffer that is wiped
// after the request; net/http's transport copies it into its pooled write
// buffer on the way out.
package verify
