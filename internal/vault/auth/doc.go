// Package auth holds the ways the agent logs in to Vault: Kubernetes (a
// projected service-account token, re-read at every login because the
// kubelet rotates it), JWT (the same token, verified by Vault's jwt auth
// method against the cluster's service-account signing keys, with no
// TokenReview call), AppRole (role_id and secret_id files; the secret_id
// optionally response-wrapped, unwrapped once, with a second unwrap of the
// same token reported as possible tampering) and Token (dev only).
//
// A Method only logs in; the lease package decides when, keeps the token
// alive and sets it on the shared client. Login requests never carry the
// client's current token.
package auth
