package vault

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/metrics"
)

// Operations, the values of credlet_vault_request_duration_seconds' op label.
const (
	OpLogin          = "login"
	OpRenew          = "renew"
	OpLookup         = "lookup"
	OpWrappingLookup = "wrapping_lookup"
	OpUnwrap         = "unwrap"
	OpKVMetadata     = "kv_metadata"
	OpKVRead         = "kv_read"
	OpTransitDecrypt = "transit_decrypt"
	OpKVWrite        = "kv_write"
	OpKVDelete       = "kv_delete"
	OpKVList         = "kv_list"
	OpMount          = "mount_info"
	OpTransitEncrypt = "transit_encrypt"
	OpTransitRewrap  = "transit_rewrap"
	OpTransitKey     = "transit_key"
	OpOther          = "other"
)

// Observer is told about every request the client makes: its operation,
// the HTTP status (0 when no response arrived) and how long it took until
// the response headers arrived.
type Observer func(op string, status int, d time.Duration)

type opKey struct{}

// WithOp labels the requests made with ctx. Requests without a label are
// classified by their path (see OpOf).
func WithOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// OpOf returns the operation a request belongs to: the label set with
// WithOp, else one inferred from the path.
func OpOf(r *http.Request) string {
	if op, ok := r.Context().Value(opKey{}).(string); ok && op != "" {
		return op
	}
	return opFromPath(r.URL.Path)
}

func opFromPath(p string) string {
	p = strings.TrimPrefix(p, "/v1/")
	switch {
	case p == "auth/token/renew-self" || p == "auth/token/renew":
		return OpRenew
	case p == "auth/token/lookup-self" || p == "auth/token/lookup":
		return OpLookup
	case p == "sys/wrapping/unwrap":
		return OpUnwrap
	case p == "sys/wrapping/lookup":
		return OpWrappingLookup
	case strings.HasPrefix(p, "auth/") && strings.HasSuffix(p, "/login"):
		return OpLogin
	case strings.Contains(p, "/metadata/"):
		return OpKVMetadata
	case strings.Contains(p, "/decrypt/"):
		return OpTransitDecrypt
	case strings.Contains(p, "/data/"):
		return OpKVRead
	}
	return OpOther
}

// transport times every request.
type transport struct {
	base     http.RoundTripper
	metrics  *metrics.Agent
	observer Observer
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	d := time.Since(start)
	op := OpOf(r)
	t.metrics.VaultRequestDuration.WithLabelValues(op).Observe(d.Seconds())
	if t.observer != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.observer(op, status, d)
	}
	return resp, err
}
