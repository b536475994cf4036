package credspec

import (
	"strconv"
	"time"
)

// KV v2 custom metadata keys credlet reads and writes on a credential set.
// They describe the set and hold no secret.
const (
	// MetaExpiresAt is when the credential stops working at the partner
	// (an OAuth token's expiry), RFC 3339; the operator sets it with
	// creds put|rotate --expires-at.
	MetaExpiresAt = "expires_at"
	// MetaRewrappedVersion is the version creds rewrap last wrote: the
	// values of an older version under new Transit ciphertext.
	MetaRewrappedVersion = "rewrapped_version"
	// MetaRotatedAt is when the values of MetaRewrappedVersion were
	// written by a rotation (RFC 3339), carried over by rewrap.
	MetaRotatedAt = "rotated_at"
)

// RewrapMark reads the marker creds rewrap leaves in a set's custom
// metadata: the version it wrote and when that version's values were
// rotated. ok is false when there is none or either key does not parse.
func RewrapMark(custom map[string]string) (version int, rotatedAt time.Time, ok bool) {
	v, err := strconv.Atoi(custom[MetaRewrappedVersion])
	if err != nil || v <= 0 {
		return 0, time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, custom[MetaRotatedAt])
	if err != nil {
		return 0, time.Time{}, false
	}
	return v, t, true
}

// RotatedAt is when the values of version were last changed: created, its
// creation time; or, for the version creds rewrap wrote (same values
// under new ciphertext), the rotation time the rewrap carried over in
// custom. A marker for another version, or one that does not parse or
// is later than created, is ignored.
func RotatedAt(custom map[string]string, version int, created time.Time) time.Time {
	if v, t, ok := RewrapMark(custom); ok && v == version && !t.After(created) {
		return t
	}
	return created
}
