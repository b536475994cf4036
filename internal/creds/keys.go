package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// DefaultMaxKeyAge is creds keys' --max-age: the card's 30 days.
const DefaultMaxKeyAge = 720 * time.Hour

// ErrKeyPolicy is a Transit key that breaks the rotation policy: its latest
// version is older than the allowed age, or auto-rotation is off or
// slower. The command exits 1.
var ErrKeyPolicy = errors.New("transit key rotation policy not met")

// KeysOptions shape creds keys.
type KeysOptions struct {
	MaxAge time.Duration    // DefaultMaxKeyAge if zero
	Now    func() time.Time // time.Now if nil
}

// Keys prints a Transit key's latest version, its age, its
// min_decryption_version and auto_rotate_period, and returns an
// ErrKeyPolicy error naming every breach of the policy.
func Keys(ctx context.Context, b Backend, key string, o KeysOptions, out io.Writer) error {
	lb, err := lifecycle(b, "creds keys")
	if err != nil {
		return err
	}
	if err := validKeyName(key); err != nil {
		return err
	}
	maxAge := o.MaxAge
	if maxAge == 0 {
		maxAge = DefaultMaxKeyAge
	}
	if maxAge < 0 {
		return usage(fmt.Sprintf("--max-age %s: want a positive duration such as 720h", maxAge))
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	k, err := lb.TransitKey(ctx, key)
	if err != nil {
		return err
	}
	created, ok := k.Versions[k.LatestVersion]
	if !ok || k.LatestVersion < 1 {
		return fmt.Errorf("transit key %s: Vault reported no creation time for its latest version %d", key, k.LatestVersion)
	}
	age := now().Sub(created)
	rotation := "off"
	if k.AutoRotatePeriod > 0 {
		rotation = fmt.Sprintf("%s (%s)", k.AutoRotatePeriod, days(k.AutoRotatePeriod))
	}
	fmt.Fprintf(out, "transit key %s on %s\n", key, lb.Describe())
	fmt.Fprintf(out, "  latest version          %d, created %s (%s ago)\n", k.LatestVersion, created.UTC().Format(time.RFC3339), days(age))
	fmt.Fprintf(out, "  min_decryption_version  %d\n", k.MinDecryptionVersion)
	fmt.Fprintf(out, "  auto_rotate_period      %s\n", rotation)
	fmt.Fprintf(out, "  versions                %s\n", versionList(k))

	var breaches []string
	if age > maxAge {
		breaches = append(breaches, fmt.Sprintf("latest version %d is %s old, older than --max-age %s (rotate now: vault write -f transit/keys/%s/rotate)",
			k.LatestVersion, days(age), maxAge, key))
	}
	switch {
	case k.AutoRotatePeriod == 0:
		breaches = append(breaches, fmt.Sprintf("auto-rotation is off (turn it on: vault write transit/keys/%s/config auto_rotate_period=%s)", key, maxAge))
	case k.AutoRotatePeriod > maxAge:
		breaches = append(breaches, fmt.Sprintf("auto_rotate_period %s is longer than --max-age %s (vault write transit/keys/%s/config auto_rotate_period=%s)",
			k.AutoRotatePeriod, maxAge, key, maxAge))
	}
	if len(breaches) == 0 {
		fmt.Fprintf(out, "ok: the latest version is %s old and Vault rotates the key every %s (--max-age %s)\n", days(age), k.AutoRotatePeriod, maxAge)
		return nil
	}
	for _, br := range breaches {
		fmt.Fprintf(out, "FAIL: %s\n", br)
	}
	return &kindError{kind: ErrKeyPolicy, msg: fmt.Sprintf("transit key %s: %s", key, strings.Join(breaches, "; "))}
}

// versionList is "1 (2026-10-01), 2 (2026-10-31), ..." oldest first; a long
// history is cut to its last ten.
func versionList(k KeyInfo) string {
	vs := slices.Sorted(maps.Keys(k.Versions))
	var parts []string
	if len(vs) > 10 {
		parts = append(parts, fmt.Sprintf("(%d older)", len(vs)-10))
		vs = vs[len(vs)-10:]
	}
	for _, v := range vs {
		note := ""
		if v < k.MinDecryptionVersion {
			note = ", no longer decrypts"
		}
		parts = append(parts, fmt.Sprintf("%d (%s%s)", v, k.Versions[v].UTC().Format("2006-01-02"), note))
	}
	return strings.Join(parts, ", ")
}

// days renders a duration as "12d 3h" (or "3h 5m" under a day).
func days(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Minute)
	if d >= 24*time.Hour {
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	}
	return fmt.Sprintf("%dh %dm", d/time.Hour, (d%time.Hour)/time.Minute)
}

// validKeyName checks a Transit key name as the agent's --credential does.
func validKeyName(key string) error {
	if key == "" {
		return usage("a Transit key name is required (e.g. credlet-partners)")
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') || len(key) > 128 {
			return usage(fmt.Sprintf("transit key %q: allowed letters, digits, '.', '_', '-' (1-128)", key))
		}
	}
	return nil
}
