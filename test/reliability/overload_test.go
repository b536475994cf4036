package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/testenv"
	vaultc "github.com/credlet/credlet/internal/vault"
)

// overloadFleet is n credential sources (the agent's own source code, one
// Vault client and one KV secret each, as n one-credential agents would
// be) polling a KV v2 mount of their own.
type overloadFleet struct {
	mount   string
	refresh time.Duration
	st      *store.Store
	names   []string

	mu        sync.Mutex
	committed map[string]map[int]time.Time // name -> version -> when the store first had it
}

// startFleet writes version 1 of every secret, starts the sources (through
// addr, the shared Vault or a proxy in front of it), and waits until every
// one serves version 1.
func startFleet(t *testing.T, n int, refresh time.Duration, addr string, timeout time.Duration) *overloadFleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &overloadFleet{mount: fmt.Sprintf("ovl%d-%d", os.Getpid(), pathSeq.Add(1)), refresh: refresh,
		committed: map[string]map[int]time.Time{}}
	root := vault.Client()
	if err := root.Sys().MountWithContext(ctx, f.mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.Client().Sys().Unmount(f.mount) })
	var decl []store.Declared
	for i := range n {
		name := fmt.Sprintf("s%02d", i)
		f.names = append(f.names, name)
		decl = append(decl, store.Declared{Name: name})
		f.put(t, name, 1)
	}
	st, err := store.New(decl)
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	rctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for _, name := range f.names {
		cred, err := credspec.Parse(name + "=" + f.mount + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := vaultc.NewClient(vaultc.ClientConfig{Addr: addr, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(vault.RootToken)
		src := source.NewVault(c, cred, st, source.Options{Refresh: refresh})
		wg.Add(2)
		go func() { defer wg.Done(); _ = src.Run(rctx) }()
		go func() { defer wg.Done(); f.watch(rctx, name) }()
	}
	for _, name := range f.names {
		if err := f.waitVersion(ctx, name, 1); err != nil {
			t.Fatalf("%s never served version 1: %v", name, err)
		}
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

// watch records when the store first serves each version of name.
func (f *overloadFleet) watch(ctx context.Context, name string) {
	seen := 0
	for {
		set, err := f.st.Wait(ctx, name, seen)
		if err != nil {
			return
		}
		seen = set.Version()
		set.Release()
		f.mu.Lock()
		if f.committed[name] == nil {
			f.committed[name] = map[int]time.Time{}
		}
		f.committed[name][seen] = time.Now()
		f.mu.Unlock()
	}
}

func (f *overloadFleet) waitVersion(ctx context.Context, name string, v int) error {
	for {
		f.mu.Lock()
		_, ok := f.committed[name][v]
		f.mu.Unlock()
		if ok {
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
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.committed[name][v]
	return at, ok
}

// requireServing fails unless every source serves version v with its value.
func (f *overloadFleet) requireServing(t *testing.T, v int) {
	t.Helper()
	for _, name := range f.names {
		set, err := f.st.Acquire(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		val, _ := set.Field("api_key")
		ok := set.Version() == v && string(val) == fakeValue("api_key", v)
		set.Release()
		if !ok {
			t.Fatalf("%s serves version %d, want the last good version %d", name, set.Version(), v)
		}
	}
}

// auditedReads returns, from Vault's file audit device, the time of every
// metadata read request of mount (rate-limited ones included: the quota
// config audits those) and how many were refused by a rate-limit quota.
func auditedReads(t *testing.T, file, mount string) (reads []time.Time, limited int) {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	prefix := mount + "/metadata/"
	for sc.Scan() {
		var e struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Error   string    `json:"error"`
			Request struct {
				Operation string `json:"operation"`
				Path      string `json:"path"`
			} `json:"request"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Type != "request" || e.Request.Operation != "read" ||
			!strings.HasPrefix(e.Request.Path, prefix) {
			continue
		}
		reads = append(reads, e.Time)
		if strings.Contains(e.Error, "rate limit quota exceeded") {
			limited++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Slice(reads, func(i, j int) bool { return reads[i].Before(reads[j]) })
	return reads, limited
}

// rate is the number of times in [from, to) per second.
func rate(times []time.Time, from, to time.Time) float64 {
	n := 0
	for _, at := range times {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

// perSecond renders the counts of each second from from on, for the log.
func perSecond(times []time.Time, from time.Time, secs int) []int {
	out := make([]int, secs)
	for _, at := range times {
		if i := int(at.Sub(from) / time.Second); at.After(from) && i < secs {
			out[i]++
		}
	}
	return out
}

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
