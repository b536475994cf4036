// Package kv is the one KV v2 layer: metadata (versions, custom metadata),
// reads of one version into a single wiped buffer, writes with
// check-and-set, soft deletes, lists (flat and recursive), and the mount
// check. The agent's sources and the operator CLI use it; errors match the
// kinds in package vault (vault.ErrNotFound, vault.ErrDeleted,
// vault.ErrCASConflict, ...). Value decodes a field's raw JSON value into
// fresh bytes without making a Go string of it.
package kv
