// Package transit is the one Transit layer: batch decrypt, encrypt and
// rewrap with a key and an optional derived-key context, and reading a
// key's configuration. The agent's sources and the operator CLI use it;
// errors match the kinds in package vault (vault.ErrBatchItem for a
// refused item, vault.ErrNotFound, vault.ErrPermission, ...).
package transit
