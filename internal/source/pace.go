package source

import (
	"math/rand/v2"
	"time"

	"github.com/credlet/credlet/internal/vault"
)

// pace decides when a source checks Vault next.
//
//   - Normally: Refresh ± Jitter.
//   - After a transient failure (429 from a rate-limit quota, 5xx, a timeout,
//     a network error): exponential backoff with full jitter, the k-th failure
//     in a row waiting a uniform time in [Refresh, min(Refresh·2^k,
//     MaxBackoff)], so a fleet that failed together does not retry together.
//     A longer Retry-After from Vault wins, plus a little jitter so agents
//     told the same instant spread out.
//   - For Hold after the last such failure, even when checks succeed: a
//     uniform time in [Refresh, min(MaxBackoff, 2·Refresh)]. An overloaded
//     Vault is then not hit again at full rate the moment some requests get
//     through, which is what would keep the fleet at or above a quota.
//
// With the defaults (MaxBackoff 1.9·Refresh) no wait exceeds 1.9 refresh
// intervals unless Vault asks for longer, so once Vault recovers every
// source has checked again within two refresh intervals. The fleet's rate
// during an overload is then about two thirds of its normal rate: a quota
// below that is beyond what backoff alone can honour while still catching
// up that fast; Vault's Retry-After (a quota's block_interval) is the
// operator's lever for more.
type pace struct {
	refresh, max, hold time.Duration
	jitter             float64
	rand               func() float64 // [0, 1)

	fails     int       // transient failures in a row
	slowUntil time.Time // end of the hold after the last transient failure
}

func newPace(o Options) *pace {
	return &pace{refresh: o.Refresh, max: o.MaxBackoff, hold: o.Hold, jitter: o.Jitter, rand: rand.Float64}
}

// next returns the wait before the next check, given how the last one
// ended at now.
func (p *pace) next(now time.Time, err error) time.Duration {
	if err != nil && retryable(err) {
		p.fails++
		p.slowUntil = now.Add(p.hold)
		ceiling := p.max
		if p.fails < 30 {
			ceiling = min(p.max, p.refresh<<p.fails)
		}
		wait := p.between(p.refresh, ceiling)
		if ra, ok := vault.RetryAfter(err); ok && ra >= wait {
			wait = ra + p.between(0, time.Duration(p.jitter*float64(p.refresh)))
		}
		return wait
	}
	p.fails = 0
	if now.Before(p.slowUntil) {
		return p.between(p.refresh, min(p.max, 2*p.refresh))
	}
	return time.Duration(float64(p.refresh) * (1 + p.jitter*(2*p.rand()-1)))
}

// between returns a uniform duration in [lo, hi].
func (p *pace) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(p.rand()*float64(hi-lo))
}
