package lease_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
)

var tv *testenv.Vault

func TestMain(m *testing.M) { testenv.MainVault(m, &tv) }

func newClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	if addr == "" {
		addr = tv.Addr
	}
	c, err := vault.NewClient(vault.ClientConfig{Addr: addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// approle creates role name and returns a method reading its files, and
// the secret_id file's path.
func approle(t *testing.T, name string, ttl, maxTTL time.Duration) (auth.Method, string) {
	t.Helper()
	roleID, secretID, err := tv.CreateAppRole(name, []string{"default"}, ttl, maxTTL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	roleFile, secretFile := filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	for p, v := range map[string]string{roleFile: roleID, secretFile: secretID} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return auth.AppRole("approle", roleFile, secretFile, false), secretFile
}

// run runs m until the test ends and checks Run returns nil.
func run(t *testing.T, m *lease.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func waitReady(t *testing.T, m *lease.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
}

// waitDeadline waits (real time) until the fake clock's next timer is due
// at want: the manager has done its work and armed its next timer.
func waitDeadline(t *testing.T, fc *clock.Fake, want time.Time) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got time.Time
	for time.Now().Before(deadline) {
		var ok bool
		if got, ok = fc.NextDeadline(); ok && got.Equal(want) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("next timer at +%v, want +%v", got.Sub(fc.Now()), want.Sub(fc.Now()))
}

// advanceTo moves the fake clock to at.
func advanceTo(fc *clock.Fake, at time.Time) { fc.Advance(at.Sub(fc.Now())) }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func logins(m *metrics.Agent, method, result string) float64 {
	return counterValue(m.Logins.WithLabelValues(method, result))
}

func renewals(m *metrics.Agent, result string) float64 {
	return counterValue(m.TokenRenewals.WithLabelValues(result))
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		panic(err)
	}
	return d.GetCounter().GetValue()
}

// lookupAccessor looks a token up by accessor with the root token.
func lookupAccessor(t *testing.T, accessor string) map[string]any {
	t.Helper()
	s, err := tv.Client().Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": accessor})
	if err != nil {
		t.Fatalf("lookup-accessor: %v", err)
	}
	return s.Data
}

func at(t0 time.Time, frac float64, d time.Duration) time.Time {
	return t0.Add(time.Duration(frac * float64(d)))
}

// noJitter makes backoff deterministic for schedule tests.
var noJitter = lease.Backoff{Jitter: -1}
