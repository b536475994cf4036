package lease

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
)

// Results of credlet_token_renewals_total and credlet_logins_total.
const (
	RenewSuccess = "success"
	RenewCapped  = "capped" // renewed, but with less TTL than asked: max TTL near
	RenewError   = "error"

	LoginSuccess        = "success"
	LoginTransientError = "transient_error"
	LoginPermanentError = "permanent_error"
)

// Manager logs in to Vault and keeps the token alive. Create it with New.
type Manager struct {
	c      *api.Client
	lc     *api.Client // c's clone for logins, with Options.LoginTimeout
	method auth.Method
	o      Options
	log    *slog.Logger
	wake   chan struct{} // Invalidate's signal to Run; buffered 1

	mu      sync.Mutex
	tok     token
	ready   chan struct{} // closed while the token is believed valid
	isReady bool
}

// token is what the manager knows about the current token. It never holds
// the token itself: that lives only in the client.
type token struct {
	accessor  string
	issued    time.Time     // when the request that set ttl was sent
	ttl       time.Duration // 0: never expires
	asked     time.Duration // TTL from login; renewals ask for this much
	renewable bool
	capped    bool // a renewal returned less than asked: log in again next
}

func (t token) expires() time.Time {
	if t.ttl == 0 {
		return time.Time{}
	}
	return t.issued.Add(t.ttl)
}

// New returns a manager that logs in to c with m. It does nothing until Run.
func New(c *api.Client, m auth.Method, opts Options) *Manager {
	o := opts.withDefaults()
	lc, err := c.CloneWithHeaders()
	if err != nil {
		lc = c // a clone fails only on a broken configuration, which every request would hit
	} else {
		lc.SetClientTimeout(o.LoginTimeout)
	}
	return &Manager{c: c, lc: lc, method: m, o: o, log: o.Logger.With("component", "vault_token", "method", m.Name()),
		wake: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Status describes the current token, without the token.
type Status struct {
	Ready     bool      // a token is set and believed valid
	Accessor  string    // the token's accessor (safe to log)
	Expires   time.Time // zero when the token never expires or none is set
	Renewable bool
}

// Status returns the current token's status. The wiring uses Expires to
// keep credlet_token_ttl_seconds current between renewals.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Status{Ready: m.isReady, Accessor: m.tok.accessor, Expires: m.tok.expires(), Renewable: m.tok.renewable}
}

// WaitReady blocks until a token is set and believed valid, or ctx ends.
func (m *Manager) WaitReady(ctx context.Context) error {
	m.mu.Lock()
	ch := m.ready
	m.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Invalidate tells the manager Vault refused the token (403). Until the
// manager has checked the token (lookup) or logged in afresh, WaitReady
// blocks. Invalidate never blocks; calls coalesce. During a login backoff
// after a transient error it makes the next attempt happen at once (at
// most once per MinInterval).
func (m *Manager) Invalidate() {
	m.setReady(false)
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) setReady(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case ok && !m.isReady:
		close(m.ready)
	case !ok && m.isReady:
		m.ready = make(chan struct{})
	}
	m.isReady = ok
}

func (m *Manager) current() token {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tok
}

// Run logs in and keeps the token alive until ctx ends; then it returns nil.
// It starts no goroutines.
func (m *Manager) Run(ctx context.Context) error {
	for {
		if !m.login(ctx) {
			return nil
		}
		m.keep(ctx)
		if ctx.Err() != nil {
			return nil
		}
		m.setReady(false)
	}
}

// login logs in, retrying until it succeeds (true) or ctx ends (false).
func (m *Manager) login(ctx context.Context) bool {
	bo := m.o.newBackoff()
	for {
		sent := m.o.Clock.Now()
		s, err := m.method.Login(ctx, m.lc)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			m.loggedIn(s, sent)
			return true
		}
		permanent := auth.IsPermanent(err)
		result, wait, level := LoginTransientError, bo.NextBackOff(), slog.LevelWarn
		if permanent {
			result, wait, level = LoginPermanentError, m.o.jitter(m.o.PermanentRetry), slog.LevelError
		}
		m.o.Metrics.Logins.WithLabelValues(m.method.Name(), result).Inc()
		m.o.Audit.Log(audit.Record{Event: audit.Login, Result: "error",
			Detail: fmt.Sprintf("method=%s %s: %v", m.method.Name(), result, err)})
		m.log.Log(ctx, level, "vault login failed", "error", err.Error(), "permanent", permanent,
			"retry_in", wait.Round(time.Millisecond).String())
		if !m.sleep(ctx, sent, wait, !permanent) {
			return false
		}
	}
}

// loggedIn sets a new token on the client.
func (m *Manager) loggedIn(s *api.Secret, sent time.Time) {
	a := s.Auth
	ttl := time.Duration(a.LeaseDuration) * time.Second
	m.c.SetToken(a.ClientToken)
	m.mu.Lock()
	m.tok = token{accessor: a.Accessor, issued: sent, ttl: ttl, asked: ttl, renewable: a.Renewable}
	m.mu.Unlock()
	m.drainWake()
	m.o.Metrics.Logins.WithLabelValues(m.method.Name(), LoginSuccess).Inc()
	m.o.Metrics.TokenTTL.Set(ttl.Seconds())
	m.o.Audit.Log(audit.Record{Event: audit.Login, Result: "ok",
		Detail: fmt.Sprintf("method=%s accessor=%s ttl=%s renewable=%t", m.method.Name(), a.Accessor, ttl, a.Renewable)})
	m.log.Info("vault login", "accessor", a.Accessor, "ttl_seconds", a.LeaseDuration, "renewable", a.Renewable)
	// Last: whoever readiness wakes finds the login already counted.
	m.setReady(true)
}

func (m *Manager) drainWake() {
	select {
	case <-m.wake:
	default:
	}
}

// sleep waits d from now, or until ctx ends (false). When wakeable, an
// Invalidate ends the wait early, but not before MinInterval after since.
func (m *Manager) sleep(ctx context.Context, since time.Time, d time.Duration, wakeable bool) bool {
	t := m.o.Clock.NewTimer(d)
	defer func() { t.Stop() }()
	var wake <-chan struct{}
	if wakeable {
		wake = m.wake
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C():
			return true
		case <-wake:
			wake = nil
			early := since.Add(m.o.MinInterval).Sub(m.o.Clock.Now())
			if early <= 0 {
				return true
			}
			if early < d {
				t.Stop()
				t = m.o.Clock.NewTimer(early)
			}
		}
	}
}

// keep renews the token on schedule. It returns when a new login is due
// (not renewable, capped, refused, expired) or ctx ends.
func (m *Manager) keep(ctx context.Context) {
	var (
		bo      interface{ NextBackOff() time.Duration }
		retryAt time.Time // set while renewals fail
	)
	for {
		tok := m.current()
		var (
			timer  clock.Timer
			timerC <-chan time.Time
		)
		if tok.ttl > 0 {
			at := tok.issued.Add(time.Duration(m.o.RenewAt * float64(tok.ttl)))
			if !retryAt.IsZero() {
				at = retryAt
			}
			timer = m.o.Clock.NewTimer(at.Sub(m.o.Clock.Now()))
			timerC = timer.C()
		}
		fired := false
		select {
		case <-ctx.Done():
		case <-m.wake:
		case <-timerC:
			fired = true
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		if !fired {
			if !m.check(ctx) {
				return
			}
			continue
		}
		switch {
		case !tok.renewable || tok.capped:
			reason := "not renewable"
			if tok.capped {
				reason = "max TTL reached"
			}
			m.log.Info("vault token: logging in afresh", "reason", reason, "accessor", tok.accessor)
			return
		case !retryAt.IsZero() && !m.o.Clock.Now().Before(tok.expires()):
			m.log.Warn("vault token expired while renewals failed; logging in afresh", "accessor", tok.accessor)
			return
		}
		err := m.renew(ctx, tok)
		switch {
		case err == nil:
			bo, retryAt = nil, time.Time{}
		case ctx.Err() != nil:
			return
		case vault.IsTokenRejected(err) || vault.IsPermanent(err):
			m.log.Warn("vault token renewal refused; logging in afresh", "error", err.Error(), "accessor", tok.accessor)
			return
		default:
			if bo == nil {
				bo = m.o.newBackoff()
			}
			wait := bo.NextBackOff()
			retryAt = m.o.Clock.Now().Add(wait)
			if exp := tok.expires(); retryAt.After(exp) {
				retryAt = exp
			}
			m.log.Warn("vault token renewal failed", "error", err.Error(), "accessor", tok.accessor,
				"retry_in", retryAt.Sub(m.o.Clock.Now()).Round(time.Millisecond).String(), "expires", tok.expires())
		}
	}
}

// renew renews the token once, asking for the login's TTL.
func (m *Manager) renew(ctx context.Context, tok token) error {
	sent := m.o.Clock.Now()
	s, err := m.c.Auth().Token().RenewSelfWithContext(vault.WithOp(ctx, vault.OpRenew), int(tok.asked/time.Second))
	if err == nil && (s == nil || s.Auth == nil) {
		err = auth.ErrNoAuth
	}
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		err = vault.Wrap(vault.OpRenew, err)
		m.o.Metrics.TokenRenewals.WithLabelValues(RenewError).Inc()
		m.o.Audit.Log(audit.Record{Event: audit.Renew, Result: "error",
			Detail: fmt.Sprintf("accessor=%s: %v", tok.accessor, err)})
		return err
	}
	ttl := time.Duration(s.Auth.LeaseDuration) * time.Second
	capped := ttl < tok.asked
	m.mu.Lock()
	m.tok.issued, m.tok.ttl, m.tok.capped, m.tok.renewable = sent, ttl, capped, s.Auth.Renewable
	m.mu.Unlock()
	result := RenewSuccess
	if capped {
		result = RenewCapped
	}
	m.o.Metrics.TokenRenewals.WithLabelValues(result).Inc()
	m.o.Metrics.TokenTTL.Set(ttl.Seconds())
	m.o.Audit.Log(audit.Record{Event: audit.Renew, Result: "ok",
		Detail: fmt.Sprintf("accessor=%s ttl=%s %s", tok.accessor, ttl, result)})
	m.log.Info("vault token renewed", "accessor", tok.accessor, "ttl_seconds", s.Auth.LeaseDuration, "capped", capped)
	m.setReady(true) // after the count, as in loggedIn
	return nil
}

// check answers an Invalidate: it looks the token up. It returns false when
// the token is gone and a new login is due.
func (m *Manager) check(ctx context.Context) bool {
	_, err := m.c.Auth().Token().LookupSelfWithContext(vault.WithOp(ctx, vault.OpLookup))
	if ctx.Err() != nil {
		return false
	}
	if err != nil && vault.IsTokenRejected(err) {
		m.log.Warn("vault refused the token; logging in afresh", "error", vault.Wrap(vault.OpLookup, err).Error(),
			"accessor", m.current().accessor)
		return false
	}
	// Valid (a 403 elsewhere was a policy denial), or Vault unreachable:
	// let the sources carry on.
	m.setReady(true)
	return true
}
