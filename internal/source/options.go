package source

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/metrics"
)

// Verifier checks a candidate version before it is published (blue/green).
// fields are views the verifier must not keep or modify. A non-nil error
// keeps the old version live; the candidate is tried again next refresh.
type Verifier interface {
	Verify(ctx context.Context, name string, version int, fields map[string][]byte) error
}

// Tokens is the part of the lease manager a source needs.
type Tokens interface {
	// WaitReady blocks until a token is set and believed valid.
	WaitReady(ctx context.Context) error
	// Invalidate reports that Vault refused the token.
	Invalidate()
}

// DefaultRefresh is the metadata poll interval when Options.Refresh is 0.
const DefaultRefresh = 10 * time.Second

// Options configures a source, Vault or file. Zero values take the
// defaults. Jitter, MaxBackoff, Hold, TransitMount, MaxBody and Tokens
// apply to Vault only.
type Options struct {
	Refresh time.Duration // Vault: metadata poll interval; file: the poll behind the watch; default 10 s
	Jitter  float64       // ± fraction of Refresh; 0: 0.1; negative: none
	// MaxBackoff caps the wait after transient failures (429, 5xx,
	// timeouts) unless Vault's Retry-After asks for longer, and the wait
	// during Hold. Default (2 − Jitter)×Refresh (1.9×): a check that starts
	// as late as that still ends within two refresh intervals of Vault
	// recovering. It is never below Refresh.
	MaxBackoff time.Duration
	// Hold is how long after the last transient failure the source keeps
	// polling at between Refresh and min(MaxBackoff, 2×Refresh); default
	// 10×Refresh.
	Hold         time.Duration
	TransitMount string         // default "transit"
	MaxBody      int            // largest response body read; default 1 MiB
	Clock        clock.Clock    // default clock.Real
	Logger       *slog.Logger   // default: discard
	Metrics      *metrics.Agent // nil: a private set nobody reads
	Audit        *audit.Logger  // optional
	Verifier     Verifier       // optional: nil publishes without a check
	Tokens       Tokens         // optional: nil uses the client's token as is
}

func (o Options) withDefaults() Options {
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	switch {
	case o.Jitter < 0:
		o.Jitter = 0
	case o.Jitter == 0 || o.Jitter >= 1:
		o.Jitter = 0.1
	}
	if o.MaxBackoff < o.Refresh {
		o.MaxBackoff = time.Duration((2 - o.Jitter) * float64(o.Refresh))
	}
	if o.Hold <= 0 {
		o.Hold = 10 * o.Refresh
	}
	if o.TransitMount == "" {
		o.TransitMount = "transit"
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
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
	return o
}
