package creds

import (
	"context"
	"errors"
	"time"

	"github.com/credlet/credlet/internal/vault"
)

// Errors callers tell apart with errors.Is. The Vault kinds are package
// vault's own: one taxonomy for the agent, the CLI and the file backend.
var (
	ErrUsage       = errors.New("usage")
	ErrCASConflict = vault.ErrCASConflict
	ErrNoMount     = errors.New("no KV v2 mount")
	ErrPermission  = vault.ErrPermission
	ErrNotFound    = vault.ErrNotFound
	ErrDeleted     = vault.ErrDeleted
	ErrUnreachable = vault.ErrUnreachable
	ErrTransit     = errors.New("transit")
)

// usage makes an ErrUsage error: the command line exits 2.
func usage(msg string) error { return &kindError{kind: ErrUsage, msg: msg} }

// kindError carries a final one-line message and the sentinel it is.
type kindError struct {
	kind error
	msg  string
	err  error // underlying cause, if any
}

func (e *kindError) Error() string         { return e.msg }
func (e *kindError) Is(target error) bool  { return target == e.kind }
func (e *kindError) Unwrap() error         { return e.err }
func newKind(kind error, msg string) error { return &kindError{kind: kind, msg: msg} }

// casError reports a check-and-set conflict on path.
func casError(path string, want, have int) error {
	e := &vault.CASError{Path: path, Want: want, Have: have}
	return &kindError{kind: ErrCASConflict, msg: e.Error(), err: e}
}

// Secret is one version of a credential set as read back.
type Secret struct {
	Version   int
	CreatedAt time.Time
	Fields    map[string][]byte // the caller wipes them
}

// VersionInfo describes one version without its values.
type VersionInfo struct {
	Version   int
	CreatedAt time.Time
	DeletedAt time.Time // zero: live
	Destroyed bool
}

// Gone reports whether the version can no longer be read.
func (v VersionInfo) Gone() bool { return !v.DeletedAt.IsZero() || v.Destroyed }

// Metadata is a set's version list, newest first.
type Metadata struct {
	Current  int
	Versions []VersionInfo
}

// Info returns the entry for version v.
func (m Metadata) Info(v int) (VersionInfo, bool) {
	for _, vi := range m.Versions {
		if vi.Version == v {
			return vi, true
		}
	}
	return VersionInfo{}, false
}

// Backend is where credential sets live. Paths are MOUNT/PATH as in
// --credential ("secret/partners/acme/zerodha").
type Backend interface {
	// Metadata returns the set's versions; ErrNotFound if it has none.
	Metadata(ctx context.Context, path string) (Metadata, error)
	// Read returns a version's fields (0: the current one). A revoked
	// version is ErrDeleted.
	Read(ctx context.Context, path string, version int) (Secret, error)
	// Write stores fields as a new version with check-and-set cas (0: the
	// set must not exist) and returns the new version. It wipes fields.
	Write(ctx context.Context, path string, fields map[string][]byte, cas int) (int, error)
	// Delete soft-deletes the current version and returns its number.
	Delete(ctx context.Context, path string) (int, error)
	// List returns the names under prefix, folders ending in "/".
	List(ctx context.Context, prefix string) ([]string, error)
	// Encrypt replaces each value with Transit ciphertext under key (and
	// the derived-key context, if any).
	Encrypt(ctx context.Context, key, keyContext string, fields map[string][]byte) error
	// Describe names the backend for messages ("Vault at http://…").
	Describe() string
	Close()
}
