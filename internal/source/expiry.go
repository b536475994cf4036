package source

import (
	"fmt"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/vault/kv"
)

// expiry is when a version stops being valid: the earlier of the secret's
// custom metadata expires_at and the version's KV deletion time (zero:
// neither). A malformed expires_at is reported and left out.
func expiry(custom map[string]string, deletion time.Time) (time.Time, error) {
	out := deletion
	s := strings.TrimSpace(custom[credspec.MetaExpiresAt])
	if s == "" {
		return out, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return out, fmt.Errorf("custom metadata %s %q is not an RFC 3339 time (ignored; fix it with creds rotate --expires-at)", credspec.MetaExpiresAt, clipValue(s))
	}
	if out.IsZero() || t.Before(out) {
		out = t
	}
	return out, nil
}

// clipValue keeps a malformed metadata value short in messages (metadata
// holds no secret, but it is outside input).
func clipValue(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// expiryOf is the expiry of the current version per a metadata poll.
func expiryOf(md kv.Metadata, version int) (time.Time, error) {
	return expiry(md.CustomMetadata, md.Versions[version].DeletionTime)
}

// setExpiry publishes an expiry: the gauge (0: none) and, when it moved
// without a new version (the metadata alone changed), the served version's.
func (p *pipeline) setExpiry(t time.Time, err error, republish bool) {
	if err != nil && err.Error() != p.expiryErr {
		p.log.Warn("credential expiry not understood", "error", err.Error(), "served_version", p.served)
		p.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: p.cred.Name, Version: p.served, Result: "warning", Detail: err.Error()})
	}
	p.expiryErr = ""
	if err != nil {
		p.expiryErr = err.Error()
	}
	if republish && !t.Equal(p.expires) {
		if serr := p.st.SetExpiry(p.cred.Name, t); serr != nil {
			p.log.Warn("credential expiry not updated", "error", serr.Error())
			return
		}
		p.log.Info("credential expiry changed", "version", p.served, "expires_at", t)
	}
	p.expires = t
	v := 0.0
	if !t.IsZero() {
		v = float64(t.Unix())
	}
	p.o.Metrics.CredentialExpiry.WithLabelValues(p.cred.Name).Set(v)
}
