package creds

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/credlet/credlet/internal/filesource"
)

// KeyInfo is a Transit key's rotation state, without key material.
type KeyInfo struct {
	Name                 string
	Derived              bool
	LatestVersion        int
	MinDecryptionVersion int
	AutoRotatePeriod     time.Duration // 0: off
	Versions             map[int]time.Time
}

// Capabilities are a token's capabilities on one credential set's KV v2
// API paths (MOUNT/data/PATH and MOUNT/metadata/PATH), as Vault's
// sys/capabilities-self reports them.
type Capabilities struct {
	Data, Metadata []string
}

// can reports whether caps grant op ("root" grants everything; "deny"
// nothing).
func can(caps []string, op string) bool {
	if slices.Contains(caps, "deny") {
		return false
	}
	return slices.Contains(caps, "root") || slices.Contains(caps, op)
}

// Lifecycle is what rewrap, keys, apply, journal rollback and --expires-at
// need beyond Backend. The Vault backend has it; the file backend does not
// (it has no Transit and no custom metadata).
type Lifecycle interface {
	Backend
	// TransitKey reads the key's versions and rotation settings.
	TransitKey(ctx context.Context, key string) (KeyInfo, error)
	// Rewrap re-encrypts ciphertexts under the key's latest version with one
	// batch call; the plaintext never leaves Vault.
	Rewrap(ctx context.Context, key, keyContext string, cts []string) ([]string, error)
	// Capabilities reports what the token may do on path's API paths.
	Capabilities(ctx context.Context, path string) (Capabilities, error)
	// ExpiresAt reads the set's custom metadata expires_at (zero: none).
	ExpiresAt(ctx context.Context, path string) (time.Time, error)
	// SetExpiresAt writes expires_at into the set's custom metadata, keeping
	// its other keys; zero removes it.
	SetExpiresAt(ctx context.Context, path string, t time.Time) error
	// MarkRewrapped records in the set's custom metadata, keeping its
	// other keys, that version written holds the values of version from,
	// which were rotated when from was created (fromCreated) or, if from
	// was itself written by a rewrap, when its marker says.
	MarkRewrapped(ctx context.Context, path string, from, written int, fromCreated time.Time) error
}

// lifecycle returns b's Lifecycle, or a usage error naming what needs it.
func lifecycle(b Backend, what string) (Lifecycle, error) {
	if l, ok := b.(Lifecycle); ok {
		return l, nil
	}
	return nil, usage(fmt.Sprintf("%s needs Vault (--source vault): %s has no Transit keys or custom metadata", what, b.Describe()))
}

// ciphertextVersion returns N of a Transit ciphertext "vault:vN:...", or 0
// for any other value.
func ciphertextVersion(v []byte) int {
	rest, ok := bytes.CutPrefix(v, transitPrefix)
	if !ok {
		return 0
	}
	i := bytes.IndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 {
		return 0
	}
	n, err := strconv.Atoi(string(rest[:i]))
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// ParseExpiresAt parses an --expires-at value: RFC 3339, or "none" (the
// zero time: no expiry). A time not after now is refused.
func ParseExpiresAt(s string, now time.Time) (time.Time, error) {
	if s == "none" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time such as 2026-12-08T03:30:00Z, or none", s)
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("%q is not in the future (now %s)", s, now.UTC().Format(time.RFC3339))
	}
	return t.UTC(), nil
}

func formatExpiry(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// cleanPath validates a MOUNT/PATH (or MOUNT/data/PATH) and returns it as
// MOUNT/PATH.
func cleanPath(p string) (string, error) { return filesource.CleanPath(p) }
