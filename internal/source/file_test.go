package source_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/testlog"
)

type lockedBuffer = testlog.Buffer

// fixture is a credentials file, its key and an agent-side source.
type fixture struct {
	dir, path, keyFile string
	key                *filesource.Key
	st                 *store.Store
	m                  *metrics.Agent
	auditOut           *lockedBuffer
	logs               *lockedBuffer
}

func newFixture(t *testing.T, creds ...string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), m: metrics.New(), auditOut: &lockedBuffer{}, logs: &lockedBuffer{}}
	f.path = filepath.Join(f.dir, "credentials.enc")
	f.key, f.keyFile = newTestKey(t, f.dir, "master.key")
	return f
}

func (f *fixture) edit(t *testing.T, fn func(d *filesource.Document) error) {
	t.Helper()
	if err := filesource.Edit(context.Background(), f.path, f.key, fn); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) put(t *testing.T, path string, cas int, kv ...string) {
	t.Helper()
	f.edit(t, func(d *filesource.Document) error { _, err := d.Put(path, fields(kv...), cas, time.Now()); return err })
}

// source declares creds in a fresh store and builds a source on it.
func (f *fixture) source(t *testing.T, c clock.Clock, creds []credspec.Credential) (*source.File, *audit.Logger) {
	t.Helper()
	var decl []store.Declared
	for _, c := range creds {
		decl = append(decl, store.Declared{Name: c.Name, Optional: c.Optional})
	}
	st, err := store.New(decl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	f.st = st
	al := audit.New(f.auditOut)
	s, err := source.NewFile(f.path, f.keyFile, creds, st, source.Options{
		Logger: slogTo(f.logs), Metrics: f.m, Audit: al, Clock: c, Refresh: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, al
}

func mustSpec(t *testing.T, spec string) credspec.Credential {
	t.Helper()
	c, err := credspec.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func field(t *testing.T, st *store.Store, name, field string) (int, string) {
	t.Helper()
	set, err := st.Acquire(name)
	if err != nil {
		t.Fatalf("acquire %s: %v", name, err)
	}
	defer set.Release()
	v, _ := set.Field(field)
	return set.Version(), string(v)
}

func TestOnceCommitsAndValidates(t *testing.T) {
	f := newFixture(t)
	f.put(t, "secret/demo/exchange", 0, "api_key", "FAKE-key-1", "api_secret", "FAKE-secret-1")
	f.put(t, "secret/demo/partial", 0, "api_key", "FAKE-key-1")
	creds := []credspec.Credential{
		mustSpec(t, "exchange=secret/demo/exchange;fields=api_key,api_secret"),
		mustSpec(t, "partial=secret/demo/partial;fields=api_key,api_secret"),
		mustSpec(t, "absent=secret/demo/absent;optional"),
	}
	s, _ := f.source(t, clock.Real, creds)
	err := s.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), `partial: version 1: credential set invalid: field "api_secret" missing (the secret has: api_key)`) {
		t.Fatalf("Once err = %v", err)
	}
	if strings.Contains(err.Error(), "absent") {
		t.Fatalf("optional set reported as an error: %v", err)
	}
	if v, val := field(t, f.st, "exchange", "api_secret"); v != 1 || val != "FAKE-secret-1" {
		t.Fatalf("exchange = v%d %q", v, val)
	}
	if _, err := f.st.Acquire("partial"); !errors.Is(err, store.ErrNotReady) {
		t.Fatalf("invalid set was committed: %v", err)
	}
	st := f.st.Status()
	if !strings.Contains(st[2].LastError, "not in the credentials file") {
		t.Fatalf("absent status: %+v", st[2])
	}
	if got := metricValue(t, f.m.Rotations.WithLabelValues("partial", metrics.RotationInvalid)); got != 1 {
		t.Fatalf("invalid rotations = %v", got)
	}
	if got := metricValue(t, f.m.CredentialVersion.WithLabelValues("exchange")); got != 1 {
		t.Fatalf("version gauge = %v", got)
	}
	// The same last-rotation value as the Vault backend: the version's
	// creation time with its fraction, not truncated to the second.
	created := st[0].CreatedAt
	if got, want := metricValue(t, f.m.LastRotation.WithLabelValues("exchange")), float64(created.UnixNano())/1e9; got != want {
		t.Fatalf("last rotation = %v, want %v", got, want)
	}
}

func TestNamesFromFile(t *testing.T) {
	f := newFixture(t)
	f.put(t, "secret/demo/exchange", 0, "api_key", "FAKE")
	f.put(t, "secret/demo/oauth", 0, "refresh_token", "FAKE")
	got, err := filesource.Names(f.path, f.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].String() != "exchange=secret/demo/exchange" || got[1].String() != "oauth=secret/demo/oauth" {
		t.Fatalf("Names = %v", got)
	}
	// With no Credentials option the source serves what the file defines.
	s, _ := f.source(t, clock.Real, got)
	s2, err := source.NewFile(f.path, f.keyFile, nil, f.st, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(s2.Credentials()) != 2 || len(s.Credentials()) != 2 {
		t.Fatalf("credentials %v", s2.Credentials())
	}
	other := filepath.Join(f.dir, "other.key")
	k2, err := filesource.GenerateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if _, err := filesource.Names(f.path, other); !errors.Is(err, filesource.ErrWrongKey) {
		t.Fatalf("Names with the wrong key: %v", err)
	}
}

// TestRunRotatesOnEdit is the agent's view of `creds rotate --source file:`:
// a running source sees the atomic rename through fsnotify, commits the new
// version, and the audit trail and metrics record it without the value.
func TestRunRotatesOnEdit(t *testing.T) {
	f := newFixture(t)
	f.put(t, "secret/demo/exchange", 0, "api_key", "FAKE-key-1")
	fc := clock.NewFake(time.Now())
	s, al := f.source(t, fc, []credspec.Credential{mustSpec(t, "exchange=secret/demo/exchange")})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	var runErr error
	go func() { defer wg.Done(); _ = al.Run(ctx) }()
	go func() { defer wg.Done(); runErr = s.Run(ctx) }()

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	set, err := f.st.Wait(wctx, "exchange", 0)
	if err != nil {
		t.Fatalf("first version: %v", err)
	}
	set.Release()

	// Rotation, as the CLI does it; the fake clock never advances, so only
	// the fsnotify event can deliver it.
	f.put(t, "secret/demo/exchange", 1, "api_key", "FAKE-key-2")
	set, err = f.st.Wait(wctx, "exchange", 1)
	if err != nil {
		t.Fatalf("rotation not seen: %v", err)
	}
	v, _ := set.Field("api_key")
	if set.Version() != 2 || string(v) != "FAKE-key-2" {
		t.Fatalf("after rotation: v%d %q", set.Version(), v)
	}
	set.Release()
	if prev, err := f.st.AcquirePrevious("exchange"); err != nil || prev.Version() != 1 {
		t.Fatalf("previous: %v", err)
	} else {
		prev.Release()
	}

	// A file written under another key: the last good version keeps serving.
	other, _ := newTestKey(t, f.dir, "other.key")
	if err := filesource.Edit(context.Background(), f.path+".new", other, func(d *filesource.Document) error {
		_, err := d.Put("secret/demo/exchange", fields("api_key", "FAKE-evil"), -1, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.path+".new", f.path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "wrong-key error", func() bool {
		return strings.Contains(f.st.Status()[0].LastError, "wrong master key (file key id "+other.ID()+", yours "+f.key.ID()+")")
	})
	if v, val := field(t, f.st, "exchange", "api_key"); v != 2 || val != "FAKE-key-2" {
		t.Fatalf("after bad file: v%d %q", v, val)
	}
	if got := metricValue(t, f.m.Rotations.WithLabelValues("exchange", metrics.RotationDecryptFailed)); got != 1 {
		t.Fatalf("decrypt_failed = %v", got)
	}

	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("Run returned %v on cancel", runErr)
	}
	out := f.auditOut.String() + f.logs.String()
	if strings.Contains(out, "FAKE-key") || strings.Contains(out, "FAKE-evil") {
		t.Fatalf("a secret value reached the audit trail or logs:\n%s", out)
	}
	if !strings.Contains(f.auditOut.String(), `"event":"commit","credential":"exchange","version":2`) {
		t.Fatalf("no commit record for version 2:\n%s", f.auditOut.String())
	}
	if metricValue(t, f.m.Rotations.WithLabelValues("exchange", metrics.RotationCommitted)) != 2 {
		t.Fatal("committed rotations != 2")
	}
}

// TestRunPollsBehindSymlink: the file is a symlink into another directory
// (a Kubernetes Secret volume's layout), so no event reaches the watched
// directory; the poll finds the change.
func TestRunPollsBehindSymlink(t *testing.T) {
	f := newFixture(t)
	real := filepath.Join(t.TempDir(), "real.enc")
	if err := filesource.Edit(context.Background(), real, f.key, func(d *filesource.Document) error {
		_, err := d.Put("secret/demo/exchange", fields("api_key", "FAKE-1"), 0, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, f.path); err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake(time.Now())
	s, _ := f.source(t, fc, []credspec.Credential{mustSpec(t, "exchange=secret/demo/exchange")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	armed := fc.TimerCreated()
	go func() { done <- s.Run(ctx) }()
	<-armed // first check done, poll timer armed
	if v, _ := field(t, f.st, "exchange", "api_key"); v != 1 {
		t.Fatalf("initial version %d", v)
	}
	if err := filesource.Edit(context.Background(), real, f.key, func(d *filesource.Document) error {
		_, err := d.Put("secret/demo/exchange", fields("api_key", "FAKE-2"), 1, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	got := make(chan int, 1)
	go func() {
		set, err := f.st.Wait(wctx, "exchange", 1)
		if err != nil {
			got <- -1
			return
		}
		got <- set.Version()
		set.Release()
	}()
	select {
	case v := <-got:
		t.Fatalf("committed version %d before the poll", v)
	case <-time.After(300 * time.Millisecond):
	}
	armed = fc.TimerCreated()
	fc.Advance(time.Minute)
	if v := <-got; v != 2 {
		t.Fatalf("after poll: version %d", v)
	}
	<-armed // the next poll is armed
	// An unchanged file is not decoded again but still counts as checked.
	before := f.st.Status()[0].CheckedAt
	fc.Advance(time.Minute)
	waitFor(t, "checked time to move", func() bool { return f.st.Status()[0].CheckedAt.After(before) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRevokeKeepsLastGood(t *testing.T) {
	f := newFixture(t)
	f.put(t, "secret/demo/exchange", 0, "api_key", "FAKE-1")
	s, _ := f.source(t, clock.Real, []credspec.Credential{mustSpec(t, "exchange=secret/demo/exchange")})
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.edit(t, func(d *filesource.Document) error { _, err := d.Delete("secret/demo/exchange", time.Now()); return err })
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := f.st.Status()[0]
	if st.Version != 1 || !strings.Contains(st.LastError, "version 1 was revoked") {
		t.Fatalf("status after revoke: %+v", st)
	}
	f.put(t, "secret/demo/exchange", 1, "api_key", "FAKE-2")
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, val := field(t, f.st, "exchange", "api_key"); v != 2 || val != "FAKE-2" || f.st.Status()[0].LastError != "" {
		t.Fatalf("after new version: v%d %q %q", v, val, f.st.Status()[0].LastError)
	}
}

func TestNewErrors(t *testing.T) {
	f := newFixture(t)
	f.put(t, "secret/demo/exchange", 0, "api_key", "FAKE-1")
	st, _ := store.New([]store.Declared{{Name: "exchange"}})
	defer st.Close()
	if _, err := source.NewFile(f.path, filepath.Join(f.dir, "nokey"), nil, st, source.Options{}); !errors.Is(err, filesource.ErrKeyFile) {
		t.Fatalf("missing key: %v", err)
	}
	_, err := source.NewFile(f.path, f.keyFile, []credspec.Credential{mustSpec(t, "other=secret/x/y")}, st, source.Options{})
	if err == nil || !strings.Contains(err.Error(), `"other" is not declared`) {
		t.Fatalf("undeclared: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// value reads a counter's or gauge's current value.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

func fields(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

func newTestKey(t *testing.T, dir, name string) (*filesource.Key, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	k, err := filesource.GenerateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k, p
}

// TestOlderFileRefused: an older copy of the credentials file put back
// (a restored backup, a replay) does not roll the served version back;
// the refusal is counted once however often the file is read, and a
// newer version is served as usual.
func TestOlderFileRefused(t *testing.T) {
	f := newFixture(t)
	f.put(t, "secret/demo/exchange", 0, "api_key", "FAKE-old-1")
	old, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, "secret/demo/exchange", 1, "api_key", "FAKE-current-2")
	s, _ := f.source(t, clock.Real, []credspec.Credential{mustSpec(t, "exchange=secret/demo/exchange")})
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = s.Once(context.Background())
	}
	st := f.st.Status()[0]
	if v, val := field(t, f.st, "exchange", "api_key"); v != 2 || val != "FAKE-current-2" {
		t.Fatalf("after the old file was put back: v%d %q", v, val)
	}
	if !strings.Contains(st.LastError, "version 1 in "+f.path+": older than the served version 2: refusing to go back") {
		t.Fatalf("status: %+v", st)
	}
	if got := metricValue(t, f.m.Rotations.WithLabelValues("exchange", metrics.RotationInvalid)); got != 1 {
		t.Fatalf("invalid rotations = %v, want the refusal counted once", got)
	}
	if n := strings.Count(f.logs.String(), "refusing to go back"); n != 1 {
		t.Fatalf("%d warnings for the refusal, want 1:\n%s", n, f.logs.String())
	}
	f.put(t, "secret/demo/exchange", 1, "api_key", "FAKE-next-2")
	f.put(t, "secret/demo/exchange", 2, "api_key", "FAKE-next-3")
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, val := field(t, f.st, "exchange", "api_key"); v != 3 || val != "FAKE-next-3" || f.st.Status()[0].LastError != "" {
		t.Fatalf("after a newer version: v%d %q %q", v, val, f.st.Status()[0].LastError)
	}
	if strings.Contains(f.logs.String()+f.auditOut.String(), "FAKE-") {
		t.Fatal("a value reached the logs or the audit trail")
	}
}
