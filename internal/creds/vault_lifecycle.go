package creds

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/transit"
)

// The Vault backend's Lifecycle: Transit key state and rewrap, the token's
// capabilities, and custom metadata, on the vault/kv and vault/transit
// layer.
var _ Lifecycle = (*Vault)(nil)

// TransitKey reads TRANSIT/keys/KEY.
func (b *Vault) TransitKey(ctx context.Context, key string) (KeyInfo, error) {
	k, err := b.transit.Key(ctx, key)
	switch {
	case errors.Is(err, vault.ErrNotFound) || vault.StatusCode(err) == 400:
		return KeyInfo{}, b.noTransit(key)
	case err != nil:
		return KeyInfo{}, b.wrap("read", b.transit.Path("keys", key), err)
	}
	return KeyInfo{Name: key, Derived: k.Derived, LatestVersion: k.LatestVersion, MinDecryptionVersion: k.MinDecryptionVersion,
		AutoRotatePeriod: k.AutoRotatePeriod, Versions: k.Versions}, nil
}

// Rewrap rewraps ciphertexts with one batch call to TRANSIT/rewrap/KEY.
func (b *Vault) Rewrap(ctx context.Context, key, keyContext string, cts []string) ([]string, error) {
	out, err := b.transit.Rewrap(ctx, key, keyContext, cts)
	var item *vault.BatchItemError
	switch {
	case errors.As(err, &item):
		return nil, &kindError{kind: ErrTransit, err: err, msg: fmt.Sprintf("transit rewrap with key %s: %s (wrong --context, or ciphertext of another key?)", key, oneLineErr(err))}
	case err != nil:
		return nil, b.wrap("write", b.transit.Path("rewrap", key), err)
	}
	for _, ct := range out {
		if transit.KeyVersion(ct) == 0 {
			return nil, newKind(ErrTransit, fmt.Sprintf("transit rewrap with key %s: a result is not Transit ciphertext", key))
		}
	}
	return out, nil
}

// Capabilities asks sys/capabilities-self (allowed by Vault's default
// policy) about the set's data and metadata paths.
func (b *Vault) Capabilities(ctx context.Context, path string) (Capabilities, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return Capabilities{}, err
	}
	var c Capabilities
	for _, q := range []struct {
		dst  *[]string
		path string
	}{{&c.Data, mount + "/data/" + rest}, {&c.Metadata, mount + "/metadata/" + rest}} {
		caps, err := b.kv.Capabilities(ctx, q.path)
		if err != nil {
			return Capabilities{}, b.wrap("write", "sys/capabilities-self", err)
		}
		*q.dst = caps
	}
	return c, nil
}

// customMetadata reads the set's custom metadata (nil when the set does
// not exist).
func (b *Vault) customMetadata(ctx context.Context, path string) (map[string]string, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return nil, err
	}
	m, err := b.kv.Metadata(ctx, mount, rest)
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, b.wrap("read", mount+"/metadata/"+rest, err)
	}
	if m.CustomMetadata == nil {
		return map[string]string{}, nil
	}
	return m.CustomMetadata, nil
}

// ExpiresAt reads custom_metadata.expires_at; zero when unset or when the
// set does not exist.
func (b *Vault) ExpiresAt(ctx context.Context, path string) (time.Time, error) {
	cm, err := b.customMetadata(ctx, path)
	if err != nil {
		return time.Time{}, err
	}
	s := strings.TrimSpace(cm[credspec.MetaExpiresAt])
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: custom metadata %s %q is not an RFC 3339 time (fix it with --expires-at)", path, credspec.MetaExpiresAt, s)
	}
	return t.UTC(), nil
}

// SetExpiresAt rewrites the set's custom metadata with expires_at set (or
// removed for the zero time), keeping its other keys.
func (b *Vault) SetExpiresAt(ctx context.Context, path string, t time.Time) error {
	return b.updateCustomMetadata(ctx, path, func(cm map[string]string) {
		if t.IsZero() {
			delete(cm, credspec.MetaExpiresAt)
		} else {
			cm[credspec.MetaExpiresAt] = t.UTC().Format(time.RFC3339)
		}
	})
}

// MarkRewrapped rewrites the set's custom metadata with rewrapped_version
// and rotated_at set, keeping its other keys.
func (b *Vault) MarkRewrapped(ctx context.Context, path string, from, written int, fromCreated time.Time) error {
	return b.updateCustomMetadata(ctx, path, func(cm map[string]string) {
		rotated := credspec.RotatedAt(cm, from, fromCreated)
		cm[credspec.MetaRewrappedVersion] = strconv.Itoa(written)
		cm[credspec.MetaRotatedAt] = rotated.UTC().Format(time.RFC3339Nano)
	})
}

// updateCustomMetadata reads the set's custom metadata, lets edit change
// it and writes it back whole (KV v2 keeps no per-key writes).
func (b *Vault) updateCustomMetadata(ctx context.Context, path string, edit func(map[string]string)) error {
	cm, err := b.customMetadata(ctx, path)
	if err != nil {
		return err
	}
	if cm == nil {
		cm = map[string]string{}
	}
	edit(cm)
	mount, rest, _ := b.split(ctx, path)
	if err := b.kv.WriteCustomMetadata(ctx, mount, rest, cm); err != nil {
		return b.wrap("write", mount+"/metadata/"+rest, err)
	}
	return nil
}
