package lease_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
)

// The schedule tests run the manager on a fake clock against the real
// Vault: Vault issues real tokens with real TTLs, and the fake clock decides
// when the manager acts.

func TestRenewsAtRenewAtOfTTL(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	method, _ := approle(t, "lease-schedule", time.Hour, 0)
	for _, renewAt := range []float64{0.8, 0.5} {
		fc := clock.NewFake(time.Now())
		t0 := fc.Now()
		met := metrics.New()
		c := newClient(t, "")
		m := lease.New(c, method, lease.Options{RenewAt: renewAt, Clock: fc, Metrics: met, Backoff: noJitter})
		run(t, m)
		waitReady(t, m)
		if c.Token() == "" {
			t.Fatal("no token set on the client")
		}
		first := at(t0, renewAt, time.Hour)
		waitDeadline(t, fc, first)
		if renewals(met, lease.RenewSuccess) != 0 {
			t.Fatal("renewed before the deadline")
		}
		advanceTo(fc, first)
		second := at(first, renewAt, time.Hour) // measured from when the renewal was sent
		waitDeadline(t, fc, second)
		if n := renewals(met, lease.RenewSuccess); n != 1 {
			t.Fatalf("renewals = %v, want 1", n)
		}
		st := m.Status()
		if !st.Expires.Equal(first.Add(time.Hour)) || !st.Ready || !st.Renewable {
			t.Errorf("status %+v, want expiry %v", st, first.Add(time.Hour))
		}
		if _, ok := lookupAccessor(t, st.Accessor)["last_renewal"]; !ok {
			t.Error("Vault has no record of the renewal")
		}
		if got := logins(met, "approle", lease.LoginSuccess); got != 1 {
			t.Errorf("logins = %v, want 1", got)
		}
	}
}

// TestCappedRenewalLogsInAgain: a renewal that returns less than asked (max
// TTL near) makes the next action a login at RenewAt of what remains.
func TestCappedRenewalLogsInAgain(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	method, _ := approle(t, "lease-capped", time.Hour, time.Hour)
	fc := clock.NewFake(time.Now())
	t0 := fc.Now()
	met := metrics.New()
	m := lease.New(newClient(t, ""), method, lease.Options{Clock: fc, Metrics: met, Backoff: noJitter})
	run(t, m)
	waitReady(t, m)
	firstAccessor := m.Status().Accessor
	renewAt := at(t0, 0.8, time.Hour)
	waitDeadline(t, fc, renewAt)
	time.Sleep(1100 * time.Millisecond) // real time, so Vault's max TTL leaves < 1 h
	advanceTo(fc, renewAt)
	eventually(t, "capped renewal", func() bool { return renewals(met, lease.RenewCapped) == 1 })
	ttl := m.Status().Expires.Sub(renewAt)
	if ttl >= time.Hour || ttl < 50*time.Minute {
		t.Fatalf("capped TTL %v, want a little under 1h", ttl)
	}
	relogin := at(renewAt, 0.8, ttl)
	waitDeadline(t, fc, relogin)
	advanceTo(fc, relogin)
	waitDeadline(t, fc, at(relogin, 0.8, time.Hour))
	if got := logins(met, "approle", lease.LoginSuccess); got != 2 {
		t.Fatalf("logins = %v, want 2", got)
	}
	if m.Status().Accessor == firstAccessor {
		t.Error("same token after the re-login")
	}
	if renewals(met, lease.RenewSuccess) != 0 {
		t.Error("a capped token was renewed again")
	}
}

// TestNotRenewableLogsInAgain: a token that cannot be renewed is replaced at
// RenewAt of its TTL, without a renewal attempt.
func TestNotRenewableLogsInAgain(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	tok, err := tv.Client().Auth().Token().Create(&api.TokenCreateRequest{TTL: "1h", Policies: []string{"default"}, Renewable: new(bool)})
	if err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake(time.Now())
	t0 := fc.Now()
	met := metrics.New()
	m := lease.New(newClient(t, ""), auth.Token(tok.Auth.ClientToken), lease.Options{Clock: fc, Metrics: met, Backoff: noJitter})
	run(t, m)
	waitReady(t, m)
	st := m.Status()
	if st.Renewable {
		t.Fatal("token reported renewable")
	}
	due := at(t0, 0.8, st.Expires.Sub(t0))
	waitDeadline(t, fc, due)
	advanceTo(fc, due)
	eventually(t, "second login", func() bool { return logins(met, "token", lease.LoginSuccess) == 2 })
	if n := renewals(met, lease.RenewSuccess) + renewals(met, lease.RenewError); n != 0 {
		t.Errorf("%v renewal attempts of a non-renewable token", n)
	}
}

// TestRenewalErrorsBackOffUntilExpiry: with Vault unreachable, renewals are
// retried with exponential backoff, the last retry at the token's expiry;
// then the manager logs in again.
func TestRenewalErrorsBackOffUntilExpiry(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	proxy, err := testenv.StartProxy(tv.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	method, _ := approle(t, "lease-backoff", 2*time.Minute, 0)
	fc := clock.NewFake(time.Now())
	t0 := fc.Now()
	met := metrics.New()
	m := lease.New(newClient(t, proxy.URL()), method, lease.Options{Clock: fc, Metrics: met, Backoff: noJitter})
	run(t, m)
	waitReady(t, m)
	renewAt := at(t0, 0.8, 2*time.Minute) // +96s
	waitDeadline(t, fc, renewAt)
	proxy.Cut()
	// Renewal fails at 96s, retried after 1, 2, 4, 8 s, then at expiry (120s).
	steps := []time.Duration{97 * time.Second, 99 * time.Second, 103 * time.Second, 111 * time.Second, 120 * time.Second}
	advanceTo(fc, renewAt)
	for i, s := range steps {
		waitDeadline(t, fc, t0.Add(s))
		if got := renewals(met, lease.RenewError); got != float64(i+1) {
			t.Fatalf("at +%v: renewal errors = %v, want %d", s, got, i+1)
		}
		advanceTo(fc, t0.Add(s))
	}
	// Expired: login, which fails too while the proxy is cut.
	waitDeadline(t, fc, t0.Add(121*time.Second))
	if renewals(met, lease.RenewError) != 5 || logins(met, "approle", lease.LoginTransientError) != 1 {
		t.Fatalf("renew errors %v, transient login errors %v; want 5 and 1",
			renewals(met, lease.RenewError), logins(met, "approle", lease.LoginTransientError))
	}
	proxy.Restore()
	advanceTo(fc, t0.Add(121*time.Second))
	waitReady(t, m)
	if got := logins(met, "approle", lease.LoginSuccess); got != 2 {
		t.Errorf("logins = %v, want 2", got)
	}
}

// TestInvalidate: a 403 reported by a source makes the manager look the token
// up; a valid token is kept, a revoked one replaced at once.
func TestInvalidate(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	method, _ := approle(t, "lease-invalidate", time.Hour, 0)
	fc := clock.NewFake(time.Now())
	met := metrics.New()
	m := lease.New(newClient(t, ""), method, lease.Options{Clock: fc, Metrics: met, Backoff: noJitter})
	run(t, m)
	waitReady(t, m)
	first := m.Status().Accessor

	m.Invalidate() // a policy denial: the token is fine
	waitReady(t, m)
	if m.Status().Accessor != first || logins(met, "approle", lease.LoginSuccess) != 1 {
		t.Fatal("a valid token was replaced")
	}

	if _, err := tv.Client().Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": first}); err != nil {
		t.Fatal(err)
	}
	m.Invalidate()
	eventually(t, "re-login", func() bool { return logins(met, "approle", lease.LoginSuccess) == 2 })
	waitReady(t, m)
	if m.Status().Accessor == first {
		t.Fatal("revoked token kept")
	}
}

// TestLoginBackoff: transient login errors back off 1, 2, 4 s...; an
// Invalidate (Vault answered a source) cuts the wait to MinInterval.
func TestLoginBackoff(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	proxy, err := testenv.StartProxy(tv.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	proxy.Cut()
	method, _ := approle(t, "lease-login-backoff", time.Hour, 0)
	fc := clock.NewFake(time.Now())
	t0 := fc.Now()
	met := metrics.New()
	m := lease.New(newClient(t, proxy.URL()), method, lease.Options{Clock: fc, Metrics: met, Backoff: noJitter})
	run(t, m)
	for i, s := range []time.Duration{time.Second, 3 * time.Second, 7 * time.Second} {
		waitDeadline(t, fc, t0.Add(s))
		if got := logins(met, "approle", lease.LoginTransientError); got != float64(i+1) {
			t.Fatalf("transient login errors = %v, want %d", got, i+1)
		}
		advanceTo(fc, t0.Add(s))
	}
	waitDeadline(t, fc, t0.Add(15*time.Second)) // the 4th attempt failed at +7s; next +8s
	proxy.Restore()
	m.Invalidate()
	waitDeadline(t, fc, t0.Add(8*time.Second)) // cut to MinInterval after the attempt
	advanceTo(fc, t0.Add(8*time.Second))
	waitReady(t, m)
	if logins(met, "approle", lease.LoginSuccess) != 1 {
		t.Fatal("no successful login")
	}
}

// TestPermanentLoginError: a refused login is reported and retried slowly,
// and an Invalidate does not hurry it.
func TestPermanentLoginError(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	method, secretFile := approle(t, "lease-permanent", time.Hour, 0)
	good, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte("FAKE-wrong-secret-id"), 0o600); err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake(time.Now())
	t0 := fc.Now()
	met := metrics.New()
	m := lease.New(newClient(t, ""), method, lease.Options{Clock: fc, Metrics: met, Backoff: noJitter})
	run(t, m)
	waitDeadline(t, fc, t0.Add(time.Minute))
	if logins(met, "approle", lease.LoginPermanentError) != 1 {
		t.Fatal("permanent error not counted")
	}
	m.Invalidate()
	time.Sleep(50 * time.Millisecond)
	waitDeadline(t, fc, t0.Add(time.Minute))
	if err := os.WriteFile(secretFile, good, 0o600); err != nil { // the operator fixes it
		t.Fatal(err)
	}
	advanceTo(fc, t0.Add(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}
