package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/fleet"
)

// overloadMount is the KV v2 mount the overload fleet polls, alone, so a
// rate-limit quota on its metadata path touches nothing else.
const overloadMount = "ovl"

// overloadResult is TestVaultOverload's measurement at bench size.
type overloadResult struct {
	sources  int
	refresh  time.Duration
	quota    int     // requests/s allowed on the metadata path
	base     float64 // metadata reads/s Vault saw before the quota
	during   float64 // … from two refresh intervals after the onset until lifted
	limited  int     // requests the quota refused (429)
	perSec   []int   // reads Vault saw in each second from the onset
	checks   int     // checks during the overload that every source served the last good version
	badCheck string  // the first failed check
	catchUp  []time.Duration
	overload time.Duration
}

func overloadValue(_, set string, v int) []byte {
	return fmt.Appendf(nil, "FAKE-overload-%s-v%d", set, v)
}

// benchOverload runs n one-set simulated agents (internal/fleet, as
// TestVaultOverload does) at refresh, puts a real rate-limit quota of 3/4 of
// their rate on their metadata path for d, checks every 500 ms that every
// one serves the last good version, lifts the quota, writes version 2 of
// every secret and times each source's catch-up. The fleet's request rate
// comes from Vault's audit device, which records the refused requests.
func (b *bench) benchOverload(ctx context.Context, fe *fleetEnv, n int, refresh, d time.Duration) (overloadResult, error) {
	res := overloadResult{sources: n, refresh: refresh, overload: d,
		quota: max(1, int(0.75*float64(n)/refresh.Seconds()))}
	root := fe.vault.Client()
	if err := root.Sys().MountWithContext(ctx, overloadMount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		return res, err
	}
	put := func(name string, v int) error {
		_, err := root.KVv2(overloadMount).Put(ctx, name, map[string]any{"api_key": string(overloadValue("", name, v))})
		return err
	}
	var agents []fleet.Agent
	for i := range n {
		name := fmt.Sprintf("o%04d", i)
		if err := put(name, 1); err != nil {
			return res, err
		}
		cred, err := credspec.Parse(name + "=" + overloadMount + "/" + name)
		if err != nil {
			return res, err
		}
		agents = append(agents, fleet.Agent{Name: name, Creds: []credspec.Credential{cred}, Token: fe.vault.RootToken})
	}
	f, err := fleet.New(agents, fleet.Options{Addr: fe.vault.Addr, Refresh: refresh, Timeout: 2 * time.Second})
	if err != nil {
		return res, err
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(fctx) }()
	defer func() { stop(); <-done }()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := f.WaitVersion(wctx, 1); err != nil {
		return res, err
	}
	quotaCfg := func(on bool) error {
		_, err := root.Logical().WriteWithContext(ctx, "sys/quotas/config", map[string]any{
			"enable_rate_limit_response_headers": on, "enable_rate_limit_audit_logging": on})
		return err
	}
	if err := quotaCfg(true); err != nil {
		return res, err
	}
	defer func() { _ = quotaCfg(false) }()
	quotaPath := "sys/quotas/rate-limit/" + overloadMount
	defer func() { _, _ = root.Logical().Delete(quotaPath) }()

	// A source that saw a transient failure at start (a timeout on this
	// shared machine) polls at one to two intervals for ten intervals
	// (source.Options.Hold): let that pass, so the baseline is the
	// fleet's steady rate.
	if !sleepCtx(ctx, 10*refresh) {
		return res, ctx.Err()
	}
	baseStart := time.Now()
	if !sleepCtx(ctx, 3*refresh) {
		return res, ctx.Err()
	}
	onset := time.Now()
	if _, err := root.Logical().WriteWithContext(ctx, quotaPath, map[string]any{
		"path": overloadMount + "/metadata/*", "rate": res.quota, "interval": "1s", "block_interval": "1s",
	}); err != nil {
		return res, err
	}
	for end := onset.Add(d); time.Now().Before(end); {
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return res, ctx.Err()
		}
		res.checks++
		if err := f.Check("api_key", 1, overloadValue); err != nil && res.badCheck == "" {
			res.badCheck = err.Error()
		}
	}
	if _, err := root.Logical().DeleteWithContext(ctx, quotaPath); err != nil {
		return res, err
	}
	lifted := time.Now()
	written := map[string]time.Time{}
	for _, a := range agents {
		if err := put(a.Name, 2); err != nil {
			return res, err
		}
		written[a.Name] = time.Now()
	}
	wctx2, cancel2 := context.WithTimeout(ctx, 30*time.Second+4*refresh)
	defer cancel2()
	waitErr := f.WaitVersion(wctx2, 2)
	for _, a := range agents {
		if at, ok := f.CommittedAt(a.Name, a.Name, 2); ok {
			res.catchUp = append(res.catchUp, at.Sub(written[a.Name]))
		}
	}
	slices.Sort(res.catchUp)
	sleepCtx(ctx, 2*refresh) // the audit device writes after each request ends
	reads, limited, err := fleet.AuditedReads(fe.auditPath, overloadMount+"/metadata/")
	if err != nil {
		return res, err
	}
	res.limited = limited
	res.base = fleet.Rate(reads, baseStart.Add(refresh), onset)
	res.during = fleet.Rate(reads, onset.Add(2*refresh), lifted)
	res.perSec = fleet.PerSecond(reads, onset, int(lifted.Sub(onset)/time.Second)+3)
	if waitErr != nil {
		return res, fmt.Errorf("after the quota was lifted: %w", waitErr)
	}
	if res.limited == 0 {
		return res, fmt.Errorf("the quota did not apply: Vault refused no request")
	}
	return res, nil
}

// sleepCtx sleeps d or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
