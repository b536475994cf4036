package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/fleet"
	"github.com/credlet/credlet/internal/testenv"
)

// overloadFleet is n simulated agents (internal/fleet: the agent's own
// source code, one Vault client and one KV secret each, as n
// one-credential agents would be) polling a KV v2 mount of their own.
type overloadFleet struct {
	*fleet.Fleet
	mount string
	names []string
}

// startFleet writes version 1 of every secret, starts the agents (through
// addr, the shared Vault or a proxy in front of it), and waits until every
// one serves version 1.
func startFleet(t *testing.T, n int, refresh time.Duration, addr string, timeout time.Duration) *overloadFleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &overloadFleet{mount: fmt.Sprintf("ovl%d-%d", os.Getpid(), pathSeq.Add(1))}
	root := vault.Client()
	if err := root.Sys().MountWithContext(ctx, f.mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.Client().Sys().Unmount(f.mount) })
	var agents []fleet.Agent
	for i := range n {
		name := fmt.Sprintf("s%02d", i)
		f.names = append(f.names, name)
		f.put(t, name, 1)
		cred, err := credspec.Parse(name + "=" + f.mount + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, fleet.Agent{Name: name, Creds: []credspec.Credential{cred}, Token: vault.RootToken})
	}
	fl, err := fleet.New(agents, fleet.Options{Addr: addr, Refresh: refresh, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	f.Fleet = fl
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = fl.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := fl.WaitVersion(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *overloadFleet) put(t *testing.T, name string, n int) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := vault.Client().KVv2(f.mount).Put(ctx, name, map[string]any{"api_key": fakeValue("api_key", n)})
	if err != nil || s.VersionMetadata.Version != n {
		t.Fatalf("write %s v%d: %v", name, n, err)
	}
	return time.Now()
}

// waitVersion waits until the agent name serves version v.
func (f *overloadFleet) waitVersion(ctx context.Context, name string, v int) error {
	for {
		if _, ok := f.CommittedAt(name, name, v); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (f *overloadFleet) committedAt(name string, v int) (time.Time, bool) {
	return f.CommittedAt(name, name, v)
}

// requireServing fails unless every agent serves version v with its value.
func (f *overloadFleet) requireServing(t *testing.T, v int) {
	t.Helper()
	err := f.Check("api_key", v, func(_, _ string, v int) []byte { return []byte(fakeValue("api_key", v)) })
	if err != nil {
		t.Fatal(err)
	}
}

// auditedReads returns, from Vault's file audit device, the time of every
// metadata read request of mount and how many a rate-limit quota refused.
func auditedReads(t *testing.T, file, mount string) (reads []time.Time, limited int) {
	t.Helper()
	reads, limited, err := fleet.AuditedReads(file, mount+"/metadata/")
	if err != nil {
		t.Fatal(err)
	}
	return reads, limited
}

var (
	rate      = fleet.Rate
	perSecond = fleet.PerSecond
)

// TestVaultOverload puts a real Vault rate-limit quota (sys/quotas/rate-limit,
// answering 429 with Retry-After) below what a fleet of 40 sources polls at
// (40 metadata reads/s at a 1 s refresh; quota 30/s, block_interval 1 s), for
// a few seconds, and counts the fleet's requests from Vault's side (its file
// audit device, which records the refused requests too). During the overload
// every source keeps serving its last good version, and from two refresh
// intervals after the onset (the time a fleet needs to hear the 429s) the
// rate the fleet sends averages at or below the quota. When the quota is
// lifted a new version of every secret is written, and every source serves it
// within two refresh intervals.
func TestVaultOverload(t *testing.T) {
	testenv.NeedServers(t)
	const (
		n        = 40
		refresh  = time.Second
		quota    = 30 // requests/s, 3/4 of the fleet's normal rate
		overload = 8 * time.Second
	)
	root := vault.Client()
	f := startFleet(t, n, refresh, vault.Addr, 2*time.Second)

	auditFile := filepath.Join(t.TempDir(), "audit.log")
	if err := vault.EnableFileAudit(auditFile); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.DisableFileAudit(auditFile) })
	setQuotaConfig := func(on bool) {
		t.Helper()
		if _, err := root.Logical().Write("sys/quotas/config", map[string]any{
			"enable_rate_limit_response_headers": on, "enable_rate_limit_audit_logging": on,
		}); err != nil {
			t.Fatal(err)
		}
	}
	setQuotaConfig(true)
	t.Cleanup(func() { setQuotaConfig(false) })
	quotaPath := "sys/quotas/rate-limit/" + f.mount
	t.Cleanup(func() { _, _ = vault.Client().Logical().Delete(quotaPath) })

	baseStart := time.Now()
	time.Sleep(3 * refresh)
	onset := time.Now()
	if _, err := root.Logical().Write(quotaPath, map[string]any{
		"path": f.mount + "/metadata/*", "rate": quota, "interval": "1s", "block_interval": "1s",
	}); err != nil {
		t.Fatal(err)
	}
	for end := onset.Add(overload); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		f.requireServing(t, 1)
	}
	if _, err := root.Logical().Delete(quotaPath); err != nil {
		t.Fatal(err)
	}
	lifted := time.Now()
	written := map[string]time.Time{}
	for _, name := range f.names {
		written[name] = f.put(t, name, 2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var slowest time.Duration
	for _, name := range f.names {
		if err := f.waitVersion(ctx, name, 2); err != nil {
			t.Fatalf("%s never served version 2 after the quota was lifted", name)
		}
		at, _ := f.committedAt(name, 2)
		took := at.Sub(written[name])
		slowest = max(slowest, took)
		if took > 2*refresh {
			t.Errorf("%s served version 2 %v after it was written (quota lifted %v before): want within two refresh intervals",
				name, took.Round(time.Millisecond), written[name].Sub(lifted).Round(time.Millisecond))
		}
	}
	time.Sleep(2 * refresh) // the audit device writes asynchronously to the requests' end

	reads, limited := auditedReads(t, auditFile, f.mount)
	base := rate(reads, baseStart.Add(refresh), onset)
	during := rate(reads, onset.Add(2*refresh), lifted)
	t.Logf("metadata reads/s seen by Vault: baseline %.1f, overload %.1f (quota %d), refused %d; per second from the onset: %v; slowest catch-up %v",
		base, during, quota, limited, perSecond(reads, onset, int(lifted.Sub(onset)/time.Second)+3), slowest.Round(time.Millisecond))
	if base <= quota {
		t.Fatalf("baseline %.1f reads/s is not above the quota %d: the test overloads nothing", base, quota)
	}
	if limited == 0 {
		t.Fatalf("Vault refused no request: the quota did not apply")
	}
	if during > quota {
		t.Errorf("the fleet sent %.1f reads/s during the overload, above the quota of %d", during, quota)
	}
}

// TestVaultSlow makes Vault slower than the sources' request timeout (a
// loopback proxy holds its answers back) for a few seconds: every source
// keeps serving its last good version, the fleet does not retry into the
// slow Vault faster than it normally polls (counted from Vault's audit
// device), and once Vault is fast again every source serves a new version
// within two refresh intervals plus the one request that was timing out.
func TestVaultSlow(t *testing.T) {
	testenv.NeedServers(t)
	const (
		n       = 20
		refresh = 500 * time.Millisecond
		timeout = time.Second
		latency = 1500 * time.Millisecond
		slow    = 6 * time.Second
	)
	proxy, err := testenv.StartProxy(vault.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	f := startFleet(t, n, refresh, proxy.URL(), timeout)
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	if err := vault.EnableFileAudit(auditFile); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.DisableFileAudit(auditFile) })

	baseStart := time.Now()
	time.Sleep(2 * time.Second)
	onset := time.Now()
	proxy.SetLatency(latency)
	t.Cleanup(func() { proxy.SetLatency(0) })
	for end := onset.Add(slow); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		f.requireServing(t, 1)
	}
	proxy.SetLatency(0)
	fast := time.Now()
	written := map[string]time.Time{}
	for _, name := range f.names {
		written[name] = f.put(t, name, 2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limit := 2*refresh + timeout
	var slowest time.Duration
	for _, name := range f.names {
		if err := f.waitVersion(ctx, name, 2); err != nil {
			t.Fatalf("%s never served version 2 after Vault was fast again", name)
		}
		at, _ := f.committedAt(name, 2)
		took := at.Sub(written[name])
		slowest = max(slowest, took)
		if took > limit {
			t.Errorf("%s served version 2 %v after it was written (%v after Vault was fast): want within %v",
				name, took.Round(time.Millisecond), at.Sub(fast).Round(time.Millisecond), limit)
		}
	}
	time.Sleep(time.Second)
	reads, _ := auditedReads(t, auditFile, f.mount)
	base := rate(reads, baseStart.Add(refresh), onset)
	during := rate(reads, onset.Add(timeout), fast)
	normal := float64(n) / refresh.Seconds()
	t.Logf("metadata reads/s seen by Vault: baseline %.1f (normal %.0f), slow %.1f; per second from the onset: %v; slowest catch-up %v",
		base, normal, during, perSecond(reads, onset, int(fast.Sub(onset)/time.Second)+2), slowest.Round(time.Millisecond))
	if base < normal*0.8 {
		t.Fatalf("baseline %.1f reads/s, want about %.0f", base, normal)
	}
	// A source waits its timeout, then one to two refresh intervals: a
	// third of the normal rate or less. Retrying at once would be two thirds.
	if max := normal * refresh.Seconds() / (timeout + refresh).Seconds(); during > max {
		t.Errorf("the fleet sent %.1f reads/s to the slow Vault, want at most %.1f (no faster than a timeout plus one refresh interval each)", during, max)
	}
}
