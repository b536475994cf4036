package source

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/vault"
)

func vaultErr(status int, retryAfter string) error {
	resp := &api.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}}
	if retryAfter != "" {
		resp.Header.Set("Retry-After", retryAfter)
	}
	return fmt.Errorf("read metadata: %w", vault.WrapResponse(vault.OpKVMetadata, resp, &api.ResponseError{StatusCode: status, Errors: []string{"FAKE"}}))
}

// TestPace walks one source through an overload with the random draw at
// both ends of its range, checking every wait against its bounds.
func TestPace(t *testing.T) {
	const T = time.Second
	throttled, unavailable := vaultErr(429, ""), vaultErr(503, "")
	steps := []struct {
		name   string
		at     time.Duration // since start
		err    error
		lo, hi time.Duration
	}{
		{"normal", 0, nil, 900 * time.Millisecond, 1100 * time.Millisecond},
		{"denied by policy: not overload, normal pace", 1 * T, vaultErr(403, ""), 900 * time.Millisecond, 1100 * time.Millisecond},
		{"first 429", 2 * T, throttled, T, 2 * T},
		{"second 429 in a row", 4 * T, throttled, T, 4 * T},
		{"third: capped at MaxBackoff", 8 * T, unavailable, T, 5 * T},
		{"Retry-After longer than the backoff wins, plus jitter", 12 * T, vaultErr(429, "30"), 30 * T, 30*T + 100*time.Millisecond},
		{"Retry-After shorter than the backoff does not shorten it", 45 * T, vaultErr(429, "1"), T, 5 * T},
		{"success during the hold: one to two intervals", 50 * T, nil, T, 2 * T},
		{"a timeout is transient too", 52 * T, fmt.Errorf("read metadata: %w", vault.Wrap(vault.OpKVMetadata, fmt.Errorf("dial: i/o timeout"))), T, 2 * T},
		{"still within the hold", 70 * T, nil, T, 2 * T},
		{"hold over: normal again", 73 * T, nil, 900 * time.Millisecond, 1100 * time.Millisecond},
	}
	for _, draw := range []float64{0, 0.999999} {
		p := newPace(Options{Refresh: T, MaxBackoff: 5 * T, Hold: 20 * T}.withDefaults())
		p.rand = func() float64 { return draw }
		start := time.Unix(1_700_000_000, 0)
		for _, st := range steps {
			got := p.next(start.Add(st.at), st.err)
			if got < st.lo || got > st.hi {
				t.Errorf("draw %v, %s: wait %v, want within [%v, %v]", draw, st.name, got, st.lo, st.hi)
			}
		}
	}
}

func TestPaceDefaults(t *testing.T) {
	o := Options{Refresh: 10 * time.Second}.withDefaults()
	if o.MaxBackoff != 19*time.Second || o.Hold != 100*time.Second {
		t.Errorf("MaxBackoff %v Hold %v; want 1.9 and 10 refresh intervals", o.MaxBackoff, o.Hold)
	}
	p := newPace(o)
	p.rand = func() float64 { return 0.999999 }
	now := time.Unix(1_700_000_000, 0)
	for i := range 40 {
		if w := p.next(now, vaultErr(500, "")); w > 19*o.Refresh/10 {
			t.Fatalf("failure %d: wait %v exceeds 1.9 refresh intervals", i+1, w)
		}
	}
}
