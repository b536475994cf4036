// Package vault builds the agent's one Vault API client: request timeouts,
// no retries inside the client (the agent's own loops retry, with backoff),
// and a transport that times every request into
// credlet_vault_request_duration_seconds{op}.
//
// It also classifies Vault errors: IsPermanent (a 4xx that retrying will not
// fix, such as a bad role) versus transient (network, 5xx, 429, sealed,
// standby), and IsTokenRejected (403: the token expired, was revoked, or lacks
// the policy). Describe renders an error as one secret-free line for logs,
// audit records and the store's last_error.
//
// The kinds callers match with errors.Is are here too: ErrNotFound,
// ErrDeleted, ErrPermission, ErrUnreachable, ErrCASConflict, ErrBatchItem,
// ErrBadResponse. The agent and the operator CLI share them.
//
// Subpackages: kv (KV v2), transit (Transit), auth (login methods), lease
// (token lifetime).
package vault
