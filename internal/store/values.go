package store

import (
	"crypto/subtle"
	"fmt"
	"maps"
	"slices"
	"time"
)

// sameValues reports whether two versions hold the same field names and
// values.
func sameValues(a, b *Set) bool {
	if !slices.Equal(a.names, b.names) {
		return false
	}
	ab, bb := a.buf.Bytes(), b.buf.Bytes()
	for i := range a.names {
		if subtle.ConstantTimeCompare(ab[a.offs[i]:a.offs[i+1]], bb[b.offs[i]:b.offs[i+1]]) != 1 {
			return false
		}
	}
	return true
}

// SameValues reports whether fields hold exactly the served version's
// names and values: a new version that only rewrapped its ciphertext. It
// does not take or wipe fields.
func (s *Store) SameValues(name string, fields map[string][]byte) bool {
	e, ok := s.entries[name]
	if !ok {
		return false
	}
	cur, err := e.acquire(&e.current)
	if err != nil {
		return false
	}
	defer cur.Release()
	if !slices.Equal(cur.names, slices.Sorted(maps.Keys(fields))) {
		return false
	}
	b := cur.buf.Bytes()
	for i, k := range cur.names {
		if subtle.ConstantTimeCompare(b[cur.offs[i]:cur.offs[i+1]], fields[k]) != 1 {
			return false
		}
	}
	return true
}

// SetExpiry changes the served version's expiry without a new version: the
// expiry lives in the secret's metadata, which can change while the
// version stays (an operator corrects it). The version is republished with
// the new expiry; the previous version (the rollback pointer) and the
// long-poll waiters are left alone. A set never committed is ErrNotReady.
func (s *Store) SetExpiry(name string, expiresAt time.Time) error {
	e, ok := s.entries[name]
	if !ok {
		return fmt.Errorf("store: expiry of %q: %w", name, ErrUnknown)
	}
	cur, err := e.acquire(&e.current)
	if err != nil {
		return fmt.Errorf("store: expiry of %q: %w", name, err)
	}
	if cur.expiresAt.Equal(expiresAt) {
		cur.Release()
		return nil
	}
	fields := make(map[string][]byte, len(cur.names))
	cur.Each(func(k string, v []byte) { fields[k] = slices.Clone(v) })
	set, err := newSet(name, Meta{Version: cur.version, CreatedAt: cur.createdAt, FetchedAt: cur.fetchedAt, ExpiresAt: expiresAt}, fields) // wipes fields
	if err != nil {
		cur.Release()
		return fmt.Errorf("store: expiry of %q: %w", name, err)
	}
	set.valuesVersion = cur.valuesVersion
	e.commitMu.Lock()
	swapped := e.current.CompareAndSwap(cur, set)
	e.commitMu.Unlock()
	cur.Release() // this call's reference
	if !swapped {
		set.Release() // a commit won: it carries its own expiry
		return nil
	}
	cur.Release() // the store's reference to the replaced copy
	s.notify()
	return nil
}
