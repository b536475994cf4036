package source_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/testenv"
)

func TestRotationCommittedWithinRefresh(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const refresh = time.Second
	path := "partners/acme/rotation"
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-api-key-1", "api_secret": "FAKE-secret-1"})
	r := newRig(t, "zerodha="+"secret/"+path, rigOpts{refresh: refresh})
	r.start()
	r.waitVersion(1, 10*time.Second)
	if _, f := r.served(); f["api_key"] != "FAKE-api-key-1" || f["api_secret"] != "FAKE-secret-1" {
		t.Fatalf("served fields %v", f)
	}
	v2 := putKV(t, tv, path, map[string]any{"api_key": "FAKE-api-key-2", "api_secret": "FAKE-secret-2"})
	took := r.waitVersion(v2, 5*time.Second)
	t.Logf("new version committed %v after it was written (refresh %v)", took.Round(time.Millisecond), refresh)
	if took > refresh+refresh/10+time.Second {
		t.Errorf("rotation took %v, want within refresh (+10%% jitter) + 1s", took)
	}
	if _, f := r.served(); f["api_key"] != "FAKE-api-key-2" {
		t.Fatalf("served fields %v after rotation", f)
	}
	if got := r.rotations(metrics.RotationCommitted); got != 2 {
		t.Errorf("rotations committed = %v, want 2", got)
	}
	if got := gaugeValue(r.met.CredentialVersion.WithLabelValues("zerodha")); got != float64(v2) {
		t.Errorf("credential version gauge %v, want %d", got, v2)
	}
	want := createdTime(t, tv, path, v2)
	if got := gaugeValue(r.met.LastRotation.WithLabelValues("zerodha")); got < float64(want.Unix()) || got > float64(want.Unix()+1) {
		t.Errorf("last rotation %v, want %v (the version's created_time)", got, want.Unix())
	}
	st := r.status()
	if st.LastError != "" || time.Since(st.CheckedAt) > 3*refresh || !st.CreatedAt.Equal(want) {
		t.Errorf("status %+v", st)
	}
}

// TestTransitDerivedKeys: ciphertext fields decrypt with one batch call
// under the credential's context; a ciphertext made under another partner's
// context fails with decrypt_failed while the old version stays live, and is
// not retried.
func TestTransitDerivedKeys(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const key, path = "partners-src", "partners/acme/transit"
	derivedKey(t, tv, key)
	putKV(t, tv, path, map[string]any{
		"api_key":      "FAKE-plain-key",
		"api_secret":   encrypt(t, tv, key, "acme", "FAKE-acme-secret"),
		"access_token": encrypt(t, tv, key, "acme", "FAKE-acme-token"),
	})
	r := newRig(t, "zerodha=secret/"+path+";transit="+key+";context=acme", rigOpts{fake: true})
	r.start()
	v, f := r.served()
	if v != 1 || f["api_key"] != "FAKE-plain-key" || f["api_secret"] != "FAKE-acme-secret" || f["access_token"] != "FAKE-acme-token" {
		t.Fatalf("served %d %v", v, f)
	}
	if n := r.ops.Get("transit_decrypt"); n != 1 {
		t.Fatalf("%d transit calls for two ciphertext fields, want one batch", n)
	}

	putKV(t, tv, path, map[string]any{
		"api_key":    "FAKE-plain-key-2",
		"api_secret": encrypt(t, tv, key, "globex", "FAKE-globex-secret"), // another partner's context
	})
	r.poll()
	if got := r.rotations(metrics.RotationDecryptFailed); got != 1 {
		t.Fatalf("decrypt_failed = %v, want 1 (last error %q)", got, r.lastError())
	}
	if v, f := r.served(); v != 1 || f["api_secret"] != "FAKE-acme-secret" {
		t.Fatalf("served %d %v after a failed decrypt, want version 1 unchanged", v, f)
	}
	if e := r.lastError(); !strings.Contains(e, "decrypt") || strings.Contains(e, "FAKE") {
		t.Errorf("last error %q: want a decrypt failure without values", e)
	}
	reads, decrypts := r.ops.Get("kv_read"), r.ops.Get("transit_decrypt")
	r.poll()
	if r.ops.Get("kv_read") != reads || r.ops.Get("transit_decrypt") != decrypts || r.rotations(metrics.RotationDecryptFailed) != 1 {
		t.Error("a version that cannot decrypt was fetched again")
	}
	if r.lastError() == "" {
		t.Error("failure no longer reported")
	}

	v3 := putKV(t, tv, path, map[string]any{"api_key": "FAKE-plain-key-3", "api_secret": encrypt(t, tv, key, "acme", "FAKE-acme-secret-3")})
	r.poll()
	if v, f := r.served(); v != v3 || f["api_secret"] != "FAKE-acme-secret-3" {
		t.Fatalf("served %d %v, want version %d", v, f, v3)
	}
	if r.lastError() != "" {
		t.Errorf("last error %q after a good version", r.lastError())
	}
}

// TestDeletedAndDestroyedVersions: the last good version stays live and the
// deletion is reported once per version.
func TestDeletedAndDestroyedVersions(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	path := "partners/acme/deleted"
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-1"})
	r := newRig(t, "zerodha=secret/"+path, rigOpts{fake: true})
	r.start()
	if v, _ := r.served(); v != 1 {
		t.Fatalf("served %d", v)
	}
	v2 := putKV(t, tv, path, map[string]any{"api_key": "FAKE-2"})
	kvVersions(t, tv, "delete", path, v2)
	r.poll()
	r.poll()
	if v, f := r.served(); v != 1 || f["api_key"] != "FAKE-1" {
		t.Fatalf("served %d %v, want version 1", v, f)
	}
	if got := r.rotations(metrics.RotationFetchFailed); got != 1 {
		t.Errorf("fetch_failed = %v after two checks of one deleted version, want 1", got)
	}
	if e := r.lastError(); !strings.Contains(e, "deleted") || !strings.Contains(e, "serving version 1") {
		t.Errorf("last error %q", e)
	}
	if r.ops.Get("kv_read") != 1 {
		t.Errorf("kv reads = %d: a deleted version's data was read", r.ops.Get("kv_read"))
	}

	v3 := putKV(t, tv, path, map[string]any{"api_key": "FAKE-3"})
	kvVersions(t, tv, "destroy", path, v3)
	r.poll()
	if e := r.lastError(); !strings.Contains(e, "destroyed") {
		t.Errorf("last error %q, want destroyed", e)
	}
	if got := r.rotations(metrics.RotationFetchFailed); got != 2 {
		t.Errorf("fetch_failed = %v, want 2", got)
	}

	v4 := putKV(t, tv, path, map[string]any{"api_key": "FAKE-4"})
	r.poll()
	if v, _ := r.served(); v != v4 || r.lastError() != "" {
		t.Fatalf("served %d (last error %q), want %d", v, r.lastError(), v4)
	}
}

func TestLatestDeletedAtStart(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	path := "partners/acme/deleted-at-start"
	kvVersions(t, tv, "delete", path, putKV(t, tv, path, map[string]any{"api_key": "FAKE-1"}))
	r := newRig(t, "zerodha=secret/"+path, rigOpts{fake: true})
	r.start()
	if v, _ := r.served(); v != 0 || r.st.Ready() {
		t.Fatalf("serving version %d of a deleted secret", v)
	}
	if e := r.lastError(); !strings.Contains(e, "deleted") || !strings.Contains(e, "nothing to serve") {
		t.Errorf("last error %q", e)
	}
	if err := r.src.Once(context.Background()); err == nil {
		t.Error("Once succeeded on a deleted secret")
	}
}

// TestRequiredFields: listed fields must be present and non-empty; only they
// are delivered; a bad version is not fetched again.
func TestRequiredFields(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	path := "partners/acme/fields"
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-1"})
	r := newRig(t, "zerodha=secret/"+path+";fields=api_key,api_secret", rigOpts{fake: true})
	r.start()
	if r.st.Ready() || r.rotations(metrics.RotationInvalid) != 1 {
		t.Fatalf("ready %v, invalid %v: want not ready, 1", r.st.Ready(), r.rotations(metrics.RotationInvalid))
	}
	if e := r.lastError(); !strings.Contains(e, `"api_secret" missing`) {
		t.Errorf("last error %q", e)
	}
	r.poll()
	if r.ops.Get("kv_read") != 1 || r.rotations(metrics.RotationInvalid) != 1 {
		t.Error("an invalid version was fetched again")
	}
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-2", "api_secret": ""})
	r.poll()
	if e := r.lastError(); r.rotations(metrics.RotationInvalid) != 2 || !strings.Contains(e, `"api_secret" is empty`) {
		t.Errorf("invalid %v, last error %q", r.rotations(metrics.RotationInvalid), e)
	}
	v3 := putKV(t, tv, path, map[string]any{"api_key": "FAKE-3", "api_secret": "FAKE-s3", "note": "not delivered"})
	r.poll()
	v, f := r.served()
	if v != v3 || len(f) != 2 || f["api_secret"] != "FAKE-s3" {
		t.Fatalf("served %d %v, want version %d with exactly the listed fields", v, f, v3)
	}
}

func TestInvalidVersions(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	tests := []struct {
		name, path, spec string
		data             map[string]any
		wantErr          string
	}{
		{name: "no fields", path: "partners/acme/empty", data: map[string]any{}, wantErr: "no fields"},
		{name: "all empty", path: "partners/acme/all-empty", data: map[string]any{"a": "", "b": nil}, wantErr: "every field is empty"},
		{name: "ciphertext without transit key", path: "partners/acme/no-key", data: map[string]any{"a": "vault:v1:FAKEFAKE"}, wantErr: "no transit key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			putKV(t, tv, tt.path, tt.data)
			r := newRig(t, "set=secret/"+tt.path, rigOpts{fake: true})
			r.start()
			if r.st.Ready() || r.rotations(metrics.RotationInvalid) != 1 || !strings.Contains(r.lastError(), tt.wantErr) {
				t.Errorf("ready %v invalid %v last error %q; want not ready, 1, %q", r.st.Ready(), r.rotations(metrics.RotationInvalid), r.lastError(), tt.wantErr)
			}
		})
	}
}

// verifier fails every version listed in reject.
type verifier struct {
	mu     sync.Mutex
	reject map[int]bool
	calls  []int
	seen   map[int]string
}

func (v *verifier) Verify(_ context.Context, name string, version int, fields map[string][]byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, version)
	if v.seen == nil {
		v.seen = map[int]string{}
	}
	v.seen[version] = string(fields["api_key"])
	if v.reject[version] {
		return errors.New("broker said 401 for the candidate key")
	}
	return nil
}

func (v *verifier) set(version int, reject bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reject[version] = reject
}

func (v *verifier) numCalls() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.calls)
}

func TestVerifier(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	path := "partners/acme/verify"
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-1"})
	ver := &verifier{reject: map[int]bool{2: true}}
	r := newRig(t, "zerodha=secret/"+path, rigOpts{fake: true, verifier: ver})
	r.start()
	if v, _ := r.served(); v != 1 || ver.seen[1] != "FAKE-1" {
		t.Fatalf("served %d; verifier saw %v", v, ver.seen)
	}
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-2"})
	r.poll()
	r.poll() // retried next refresh
	if got := r.rotations(metrics.RotationVerifyFailed); got != 2 || ver.numCalls() != 3 {
		t.Fatalf("verify_failed %v, verifier calls %d; want 2 and 3", got, ver.numCalls())
	}
	if v, f := r.served(); v != 1 || f["api_key"] != "FAKE-1" {
		t.Fatalf("served %d %v during failed verification", v, f)
	}
	if e := r.lastError(); !strings.Contains(e, "verification") {
		t.Errorf("last error %q", e)
	}
	ver.set(2, false)
	r.poll()
	if v, _ := r.served(); v != 2 {
		t.Fatalf("served %d after the check passed", v)
	}
}

// TestSteadyStateOneRequestPerRefresh counts on the client side; the
// Vault-side count is TestSteadyStateRequestsSeenByVault.
func TestSteadyStateOneRequestPerRefresh(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const key, path = "partners-steady", "partners/acme/steady"
	derivedKey(t, tv, key)
	putKV(t, tv, path, map[string]any{"api_key": "FAKE", "api_secret": encrypt(t, tv, key, "acme", "FAKE-s")})
	r := newRig(t, "zerodha=secret/"+path+";transit="+key+";context=acme", rigOpts{fake: true})
	r.start()
	before := r.ops.Total()
	const n = 20
	for range n {
		r.poll()
	}
	if got := r.ops.Total() - before; got != n || r.ops.Get("kv_metadata") != n {
		t.Fatalf("%d requests for %d refreshes (kv_metadata %d), want exactly one metadata read each", got, n, r.ops.Get("kv_metadata"))
	}
	if r.status().LastError != "" {
		t.Errorf("last error %q", r.lastError())
	}
}

// TestJitter: polls are spread by ±10% around the refresh.
func TestJitter(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	path := "partners/acme/jitter"
	putKV(t, tv, path, map[string]any{"api_key": "FAKE"})
	const refresh = 10 * time.Second
	r := newRig(t, "zerodha=secret/"+path, rigOpts{fake: true, refresh: refresh})
	r.start()
	var lo, hi time.Duration = refresh, refresh
	for range 30 {
		next, _ := r.fc.NextDeadline()
		d := next.Sub(r.fc.Now())
		if d < refresh*9/10 || d > refresh*11/10 {
			t.Fatalf("poll in %v, want %v ±10%%", d, refresh)
		}
		lo, hi = min(lo, d), max(hi, d)
		r.poll()
	}
	if hi-lo < refresh/20 {
		t.Errorf("30 polls within %v of each other: no jitter", hi-lo)
	}
}

// TestTokenRevoked: Vault refuses a revoked token; the source asks the lease
// manager for a new one and gets the new version in the same check.
func TestTokenRevoked(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	path := "partners/acme/revoked"
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-1"})
	r := newRig(t, "zerodha=secret/"+path, rigOpts{fake: true, method: approle(t, tv, "source-revoked", time.Hour, 0)})
	r.start()
	first := r.tokens.Status().Accessor
	if _, err := tv.Client().Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": first}); err != nil {
		t.Fatal(err)
	}
	v2 := putKV(t, tv, path, map[string]any{"api_key": "FAKE-2"})
	r.poll()
	if v, _ := r.served(); v != v2 {
		t.Fatalf("served %d, want %d in the check that met the revoked token (last error %q)", v, v2, r.lastError())
	}
	if r.tokens.Status().Accessor == first || counterValue(r.met.Logins.WithLabelValues("approle", "success")) != 2 {
		t.Error("no fresh login")
	}
}

// TestOnceRetriesTransientErrors: --once rides out a short outage.
func TestOnceRetriesTransientErrors(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	p, err := testenv.StartProxy(tv.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	path := "partners/acme/once"
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-1"})
	r := newRig(t, "zerodha=secret/"+path, rigOpts{addr: p.URL(), fake: true})
	r.startTokens()
	p.Cut()
	created := r.fc.TimerCreated()
	errc := make(chan error, 1)
	go func() { errc <- r.src.Once(context.Background()) }()
	r.waitTimer(created) // the first attempt failed; a retry is armed
	if r.lastError() == "" {
		t.Error("failed attempt not reported")
	}
	p.Restore()
	r.fc.Advance(2 * time.Second)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Once did not return after Vault came back")
	}
	if v, _ := r.served(); v != 1 {
		t.Fatalf("served %d", v)
	}
}
