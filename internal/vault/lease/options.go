package lease

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/vault"
)

// DefaultRenewAt is the fraction of a token's TTL after which it is renewed.
const DefaultRenewAt = 0.8

// Options configures a Manager. Zero values take the defaults.
type Options struct {
	RenewAt float64        // fraction of the TTL, in (0, 1); default 0.8
	Clock   clock.Clock    // default clock.Real
	Logger  *slog.Logger   // default: discard
	Metrics *metrics.Agent // nil: a private set nobody reads
	Audit   *audit.Logger  // optional
	Backoff Backoff        // retry schedule for transient errors
	// PermanentRetry is the wait after a permanent login error (bad role,
	// denied JWT), jittered by Backoff.Jitter; default 60 s.
	PermanentRetry time.Duration
	// MinInterval is the least time between two login attempts when an
	// Invalidate cuts a backoff short; default 1 s.
	MinInterval time.Duration
	// LoginTimeout bounds one login; default vault.LoginTimeout. Other
	// requests keep the client's own timeout.
	LoginTimeout time.Duration
}

// Backoff is an exponential backoff with jitter (cenkalti/backoff/v4).
type Backoff struct {
	Initial    time.Duration // default 1 s
	Max        time.Duration // default 60 s
	Multiplier float64       // default 2
	Jitter     float64       // randomization factor in (0, 1); 0: 0.2; negative: none
}

func (o Options) withDefaults() Options {
	if !(o.RenewAt > 0 && o.RenewAt < 1) {
		o.RenewAt = DefaultRenewAt
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New() // a private set nobody reads: components never check for nil
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = time.Second
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = 60 * time.Second
	}
	if o.Backoff.Multiplier < 1 {
		o.Backoff.Multiplier = 2
	}
	switch {
	case o.Backoff.Jitter < 0:
		o.Backoff.Jitter = 0 // none: deterministic tests
	case o.Backoff.Jitter == 0 || o.Backoff.Jitter >= 1:
		o.Backoff.Jitter = 0.2
	}
	if o.PermanentRetry <= 0 {
		o.PermanentRetry = 60 * time.Second
	}
	if o.MinInterval <= 0 {
		o.MinInterval = time.Second
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = vault.LoginTimeout
	}
	return o
}

// newBackoff returns a fresh backoff on the injected clock; it never stops.
func (o Options) newBackoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     o.Backoff.Initial,
		RandomizationFactor: o.Backoff.Jitter,
		Multiplier:          o.Backoff.Multiplier,
		MaxInterval:         o.Backoff.Max,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               o.Clock,
	}
	b.Reset()
	return b
}

// jitter spreads d by ±Backoff.Jitter.
func (o Options) jitter(d time.Duration) time.Duration {
	f := 1 + o.Backoff.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
