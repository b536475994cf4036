// Package creds is the logic behind `credlet-agent creds`: the operator
// commands put, rotate, revoke, list, history and rollback, against Vault
// (KV v2 + Transit) or against the embedded encrypted file source
// (internal/filesource), with the same versioning semantics on both.
//
//   - put writes a new credential set with check-and-set 0 (it must not
//     exist yet), or on top of --cas N.
//   - rotate reads the current version N, replaces the given fields (keeping
//     the others unless --replace), and writes with check-and-set N, so two
//     operators can't silently overwrite each other.
//   - revoke soft-deletes the current version.
//   - history lists versions with their times, never values.
//   - rollback re-publishes an old version as the newest, on top of the
//     current one.
//
// Values come from FIELD=@FILE or FIELD=- (stdin); FIELD=VALUE works but
// warns that the value lands in shell history. With --transit KEY the new
// values are encrypted by Vault Transit (derived keys take --context)
// before they are written, so KV holds only "vault:v…" ciphertext. Nothing
// here prints or logs a value or a token.
//
// Errors are one line naming the problem and the fix; the common ones wrap
// ErrCASConflict, ErrNoMount, ErrPermission, ErrNotFound, ErrDeleted,
// ErrUnreachable and ErrUsage.
package creds
