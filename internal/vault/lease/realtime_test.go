package lease_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/testlog"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/lease"
)

// TestFirstRenewalAt80PercentMeasuredByVault: for a 20 s token, Vault sees
// the renewal 16 s (±3%) after it issued the token. Both times come from
// Vault's own token lookup (issue_time, last_renewal).
func TestFirstRenewalAt80PercentMeasuredByVault(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const ttl = 20 * time.Second
	method, _ := approle(t, "lease-realtime-80", ttl, time.Hour)
	met := metrics.New()
	var auditBuf syncBuffer
	al := audit.New(&auditBuf)
	actx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = al.Run(actx) }()
	m := lease.New(newClient(t, ""), method, lease.Options{Metrics: met, Audit: al})
	run(t, m)
	waitReady(t, m)
	accessor := m.Status().Accessor
	deadline := time.Now().Add(ttl + 5*time.Second)
	for renewals(met, lease.RenewSuccess) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no renewal within the TTL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	data := lookupAccessor(t, accessor)
	issued, err1 := time.Parse(time.RFC3339Nano, data["issue_time"].(string))
	renewed, err2 := time.Parse(time.RFC3339Nano, data["last_renewal"].(string))
	if err1 != nil || err2 != nil {
		t.Fatalf("Vault lookup times: %v %v (%v)", err1, err2, data)
	}
	frac := float64(renewed.Sub(issued)) / float64(ttl)
	t.Logf("Vault: issued %s, renewed %s later = %.2f%% of the %v TTL", issued.Format(time.RFC3339Nano), renewed.Sub(issued), 100*frac, ttl)
	if frac < 0.77 || frac > 0.83 {
		t.Fatalf("first renewal at %.1f%% of the TTL, want 80%% ±3%%", 100*frac)
	}
	stop()
	// The audit trail has the login and the renewal, with the accessor and
	// never the token.
	eventually(t, "audit records", func() bool { return bytes.Contains(auditBuf.Bytes(), []byte(`"renew"`)) })
	out := auditBuf.Bytes()
	if !bytes.Contains(out, []byte(`"login"`)) || !bytes.Contains(out, []byte(accessor)) {
		t.Errorf("audit trail lacks login/accessor:\n%s", out)
	}
	if bytes.Contains(out, []byte("hvs.")) {
		t.Error("audit trail holds a token")
	}
}

// TestMaxTTLRelogin: a token capped by its max TTL is replaced before it
// expires: the client's token works throughout.
func TestMaxTTLRelogin(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	method, _ := approle(t, "lease-realtime-maxttl", 4*time.Second, 8*time.Second)
	met := metrics.New()
	c := newClient(t, "")
	m := lease.New(c, method, lease.Options{Metrics: met})
	run(t, m)
	waitReady(t, m)
	first := m.Status().Accessor
	end := time.Now().Add(11 * time.Second)
	var failures []string
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, err := c.Auth().Token().LookupSelfWithContext(ctx); err != nil {
			failures = append(failures, err.Error())
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	if len(failures) > 0 {
		t.Errorf("token refused %d times during the max-TTL re-login: %s", len(failures), strings.Join(failures, " | "))
	}
	if got := logins(met, "approle", lease.LoginSuccess); got < 2 {
		t.Errorf("logins = %v, want at least 2 (re-login at max TTL)", got)
	}
	if renewals(met, lease.RenewCapped) < 1 {
		t.Error("no capped renewal recorded")
	}
	if m.Status().Accessor == first {
		t.Error("still the first token after its max TTL")
	}
}

type syncBuffer = testlog.Buffer

// TestLoginTimeout: a login may take longer than the client's per-request
// timeout (Vault answering a login storm slowly): it is waited for, not
// given up and sent again; other requests keep the client's bound.
func TestLoginTimeout(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	p, err := testenv.StartProxy(tv.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// One role each: a login the client gave up on may still have used
	// up a secret_id in Vault.
	shortMethod, _ := approle(t, "lease-login-timeout-short", time.Hour, time.Hour)
	method, _ := approle(t, "lease-login-timeout", time.Hour, time.Hour)
	c, err := vault.NewClient(vault.ClientConfig{Addr: p.URL(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.SetLatency(700 * time.Millisecond)

	// With the login bounded like every other request, it never gets in.
	met := metrics.New()
	short := lease.New(c, shortMethod, lease.Options{Metrics: met, LoginTimeout: 300 * time.Millisecond,
		Backoff: lease.Backoff{Initial: 50 * time.Millisecond, Max: 50 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = short.Run(ctx)
	cancel()
	if err != nil || short.Status().Ready || logins(met, "approle", lease.LoginTransientError) < 2 {
		t.Fatalf("login bounded at 300ms through a 700ms Vault: Run %v, ready %t, %v transient errors",
			err, short.Status().Ready, logins(met, "approle", lease.LoginTransientError))
	}

	met = metrics.New()
	m := lease.New(c, method, lease.Options{Metrics: met, LoginTimeout: 5 * time.Second})
	run(t, m)
	waitReady(t, m)
	if n := logins(met, "approle", lease.LoginTransientError); n != 0 {
		t.Errorf("%v logins given up before the slow one got in", n)
	}
	if _, err := c.Auth().Token().LookupSelfWithContext(context.Background()); err == nil {
		t.Error("a lookup through the 700ms Vault succeeded within the client's 300ms")
	}
	p.SetLatency(0)
	if _, err := c.Auth().Token().LookupSelfWithContext(context.Background()); err != nil {
		t.Errorf("the token from the slow login: %v", err)
	}
}
