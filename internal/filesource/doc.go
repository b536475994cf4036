// Package filesource is credlet's embedded credentials source for local
// development: an AES-256-GCM encrypted file that stands in for Vault.
//
// The file holds credential sets keyed by the same KV paths the agent would
// read from Vault ("secret/demo/exchange"), each with KV v2 semantics: a
// current version, its creation time, an optional soft-delete (revoke) time,
// and up to MaxVersions older versions for history and rollback. The
// operator CLI (`credlet-agent creds ... --source file:PATH`) edits it with
// Edit; the agent reads it with ReadFile and DecodeCurrent through
// source.File, which feeds the same pipeline as the Vault source, so sinks,
// socket, audit and metrics behave exactly as with Vault.
//
// On disk:
//
//	magic "CREDLETF" | format version 0x01 | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext+tag
//
// The first 29 bytes are the GCM additional data, so the header is
// authenticated. The key id is the first 8 bytes of SHA-256 of the master
// key, which lets a wrong key be reported as such rather than as corruption.
// Every write uses a fresh random nonce and replaces the file atomically
// (temp file, fsync, rename, fsync of the directory) under an flock on
// PATH.lock, so concurrent operators serialize and a reader never sees half
// a file.
//
// The plaintext is JSON; field values are base64 ([]byte), which lets the
// agent decode them straight out of a locked buffer into slices it can wipe.
package filesource
