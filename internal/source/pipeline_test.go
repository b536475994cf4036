package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/store"
)

// pipeRig is one pipeline with its store, metrics and audit trail.
type pipeRig struct {
	p     *pipeline
	st    *store.Store
	m     *metrics.Agent
	audit *bytes.Buffer
	al    *audit.Logger
	stop  func()
}

func newPipeRig(t *testing.T, spec string, v Verifier) *pipeRig {
	t.Helper()
	cred, err := credspec.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New([]store.Declared{{Name: cred.Name}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	r := &pipeRig{st: st, m: metrics.New(), audit: &bytes.Buffer{}}
	r.al = audit.New(r.audit)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.al.Run(ctx); close(done) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	o := Options{Metrics: r.m, Audit: r.al, Verifier: v, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.withDefaults()
	r.p = newPipeline(cred, st, o, "test")
	return r
}

func (r *pipeRig) rotations(result string) float64 {
	return read(r.m.Rotations.WithLabelValues(r.p.cred.Name, result))
}

func read(m prometheus.Metric) float64 {
	var d dto.Metric
	_ = m.Write(&d)
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func fetched(version int, created time.Time, kv ...string) *Fetched {
	f := &Fetched{Version: version, CreatedAt: created, Values: map[string][]byte{}}
	for i := 0; i < len(kv); i += 2 {
		f.Values[kv[i]] = []byte(kv[i+1])
	}
	return f
}

type rejectVerifier struct{ calls int }

func (v *rejectVerifier) Verify(context.Context, string, int, map[string][]byte) error {
	v.calls++
	return errors.New("broker said no")
}

// TestPipelineOutcomes drives the one pipeline directly: each step's
// failure keeps the last good version, moves rotations_total by exactly
// one with its result, and a repeat failure is skipped where it would
// repeat.
func TestPipelineOutcomes(t *testing.T) {
	ctx := context.Background()
	created := time.Date(2026, 12, 6, 9, 0, 0, 123456789, time.UTC)
	now := created.Add(time.Minute)
	okDecrypt := func(_ context.Context, names, cts []string) ([][]byte, error) {
		out := make([][]byte, len(cts))
		for i, ct := range cts {
			out[i] = []byte("FAKE-plain-of-" + strings.TrimPrefix(ct, "vault:v1:"))
		}
		return out, nil
	}
	badDecrypt := func(context.Context, []string, []string) ([][]byte, error) {
		return nil, fmt.Errorf("transit %w: field %q: cipher: message authentication failed", errDecrypt, "api_secret")
	}

	r := newPipeRig(t, "zerodha=secret/partners/acme/zerodha;transit=partners;fields=api_key,api_secret", nil)
	if err := r.p.Publish(ctx, fetched(1, created, "api_key", "FAKE-key-1", "api_secret", "vault:v1:abc"), okDecrypt, now); err != nil {
		t.Fatal(err)
	}
	set, err := r.st.Acquire("zerodha")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := set.Field("api_secret"); set.Version() != 1 || string(v) != "FAKE-plain-of-abc" {
		t.Fatalf("committed v%d %q", set.Version(), v)
	}
	set.Release()
	if got, want := read(r.m.LastRotation.WithLabelValues("zerodha")), float64(created.UnixNano())/1e9; got != want {
		t.Errorf("last rotation %v, want %v (created time with its fraction)", got, want)
	}
	if r.rotations(metrics.RotationCommitted) != 1 || read(r.m.CredentialVersion.WithLabelValues("zerodha")) != 1 {
		t.Fatal("committed rotation or version gauge not counted")
	}

	// decrypt failure: counted once, then skipped for the same version
	if err := r.p.Publish(ctx, fetched(2, created, "api_key", "FAKE-key-2", "api_secret", "vault:v1:def"), badDecrypt, now); !errors.Is(err, errDecrypt) {
		t.Fatalf("decrypt failure: %v", err)
	}
	if _, skipped := r.p.Skipped(2); !skipped || r.rotations(metrics.RotationDecryptFailed) != 1 {
		t.Fatalf("version 2 not skipped after a repeatable failure (decrypt_failed %v)", r.rotations(metrics.RotationDecryptFailed))
	}
	// invalid: a listed field missing
	if err := r.p.Publish(ctx, fetched(3, created, "api_key", "FAKE-key-3"), okDecrypt, now); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `field "api_secret" missing (the secret has: api_key)`) {
		t.Fatalf("missing field: %v", err)
	}
	// ciphertext without a decrypter (a file holding "vault:v1:...")
	if err := r.p.Publish(ctx, fetched(4, created, "api_key", "FAKE-key-4", "api_secret", "vault:v1:x"), nil, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ciphertext without a decrypter: %v", err)
	}
	if got := r.rotations(metrics.RotationInvalid); got != 2 {
		t.Fatalf("invalid = %v, want 2", got)
	}
	// a check that found no candidate is not a rotation
	_ = r.p.CheckFailed(errors.New("read metadata: kv_metadata: HTTP 503"))
	_ = r.p.CheckFailed(errors.New("read metadata: kv_metadata: HTTP 503"))
	// a gone version is counted once however often it is seen
	_ = r.p.Gone(5, "destroyed")
	_ = r.p.Gone(5, "destroyed")
	if got := r.rotations(metrics.RotationFetchFailed); got != 1 {
		t.Fatalf("fetch_failed = %v, want 1 (gone once; check failures are not rotations)", got)
	}
	if st := r.st.Status()[0]; st.Version != 1 || !strings.Contains(st.LastError, "version 5 destroyed; still serving version 1") {
		t.Fatalf("status %+v", st)
	}

	// verify failure is retried (not skipped) and counted each time
	rv := &rejectVerifier{}
	r2 := newPipeRig(t, "feed=secret/x/feed", rv)
	for range 2 {
		if err := r2.p.Publish(ctx, fetched(1, created, "k", "FAKE-v"), nil, now); !errors.Is(err, ErrVerify) {
			t.Fatalf("verify: %v", err)
		}
	}
	if _, skipped := r2.p.Skipped(1); skipped || rv.calls != 2 || r2.rotations(metrics.RotationVerifyFailed) != 2 {
		t.Fatalf("verify failures: skipped %t calls %d counted %v", skipped, rv.calls, r2.rotations(metrics.RotationVerifyFailed))
	}

	r.stop()
	r2.stop()
	out := r.audit.String() + r2.audit.String()
	if strings.Contains(out, "FAKE-") {
		t.Fatalf("a value reached the audit trail:\n%s", out)
	}
	for _, want := range []string{`"event":"commit","credential":"zerodha","version":1`, `"event":"decrypt","credential":"zerodha","version":2,"result":"error"`, `"result":"deleted"`, `"event":"verify","credential":"feed","version":1,"result":"failed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit trail lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(r.audit.String(), `"result":"deleted"`); n != 1 {
		t.Errorf("gone version audited %d times, want 1", n)
	}
}

// TestPipelineWipesWhatItDoesNotCommit: values not selected, and every
// value of a refused version, are zeroed.
func TestPipelineWipesWhatItDoesNotCommit(t *testing.T) {
	r := newPipeRig(t, "feed=secret/x/feed;fields=a", nil)
	f := fetched(1, time.Now(), "a", "FAKE-a", "b", "FAKE-b")
	b := f.Values["b"]
	if err := r.p.Publish(context.Background(), f, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if string(b) != strings.Repeat("\x00", len("FAKE-b")) {
		t.Errorf("unselected value not wiped: %q", b)
	}
	f = fetched(2, time.Now(), "a", "", "b", "FAKE-b2")
	b = f.Values["b"]
	if err := r.p.Publish(context.Background(), f, nil, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty required field: %v", err)
	}
	if string(b) != strings.Repeat("\x00", len("FAKE-b2")) {
		t.Errorf("refused version's value not wiped: %q", b)
	}
}

// TestPipelineWithoutMetrics: Options without Metrics record into a
// private set; nothing checks for nil.
func TestPipelineWithoutMetrics(t *testing.T) {
	cred, _ := credspec.Parse("feed=secret/x/feed")
	st, err := store.New([]store.Declared{{Name: "feed"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	o := Options{}.withDefaults()
	if o.Metrics == nil {
		t.Fatal("withDefaults left Metrics nil")
	}
	p := newPipeline(cred, st, o, "test")
	if err := p.Publish(context.Background(), fetched(1, time.Now(), "k", "FAKE-v"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = p.Gone(2, "destroyed")
	if read(o.Metrics.Rotations.WithLabelValues("feed", metrics.RotationCommitted)) != 1 {
		t.Fatal("the private set did not record the commit")
	}
}
