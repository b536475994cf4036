// Package source fetches credential sets into the store: one pipeline
// (select → decrypt → validate → verify → commit → report, pipeline.go)
// fed by two backends beside each other, Vault (vault.go) and the embedded
// encrypted file (file.go). A backend reads a version into a Fetched (its
// values, creation and expiry times, and per-version metadata such as KV
// custom metadata) and hands it over; the pipeline is the one place that
// de-duplicates failures, moves credlet_rotations_total and the version and
// last-rotation gauges, writes audit records and logs.
//
// credlet_rotations_total counts attempts to publish a version found new:
// committed, or the step that refused it. A check that could not tell
// whether a new version exists (metadata read failed, the file is
// unreadable) is not a rotation; a deleted, destroyed or revoked current
// version counts fetch_failed once.
//
// One Vault source runs per credential set. Every Refresh (±10% jitter) it
// reads the KV v2 metadata of its secret, which carries no secret value, and
// reads the data only at start and when current_version changes: one
// request per set per refresh at steady state. A new version's fields that
// hold Transit ciphertext ("vault:v…") are decrypted with one batch call to
// transit/decrypt/KEY (with the derived-key context, if any), required
// fields are checked, an optional Verifier (blue/green) is asked, and the
// version is committed to the store.
//
// Any failure keeps the last good version live and is reported in the
// log, the audit trail, credlet_rotations_total{result} and the store's
// last_error (a secret-free message). A deleted or destroyed current version
// is reported the same way. Failures that the same version would repeat
// (bad ciphertext, missing fields) are not retried until a new version
// appears; others (403, verify) are retried next refresh. Transient
// failures (429, 5xx, timeouts, network) back off with full jitter up to
// MaxBackoff (1.9 refresh intervals) or Vault's Retry-After, and the source
// polls at one to two intervals for Hold after the last one (see pace), so
// an overloaded Vault is not hit in step by the whole fleet.
// When Vault refuses the token (403) the source tells the lease manager,
// waits for a fresh token, and tries once more at once.
//
// Plaintext is decoded from the response body straight into fresh byte
// slices that the store takes over (and wipes); the body and every
// transient copy are wiped. No Go string ever holds a secret value.
package source
