// Package lease keeps the agent's Vault token alive.
//
// Manager.Run logs in with an auth.Method, sets the token on the shared
// *api.Client, and renews it when RenewAt (0.8) of its TTL has elapsed,
// measured from when the login or renew request was sent. When a renewal
// returns less TTL than asked (the max TTL is near) or the token is not
// renewable, it logs in afresh at RenewAt of what remains. Renewal errors
// are retried with exponential backoff until the token expires; then it logs
// in again. Login errors are retried with backoff (transient) or slowly
// (permanent: bad role, denied JWT, used wrapping token), and reported in
// logs, metrics and the audit trail.
//
// Sources call Invalidate when Vault refuses the token (403); the manager
// then checks the token with a lookup and logs in at once if it is gone,
// even in the middle of a backoff. WaitReady blocks until a token is
// believed valid.
//
// The schedule runs on an injected clock, so tests drive it with
// clock.Fake. api.LifetimeWatcher is not used: it renews at about 70% of the
// TTL with a random grace period.
package lease
