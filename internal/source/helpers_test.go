package source_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
)

var tv *testenv.Vault

func TestMain(m *testing.M) {
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		var err error
		if tv, err = s.StartVault(ctx); err != nil {
			return err
		}
		return setupVault(tv)
	})
}

// agentPolicy is what an agent's role may do in the tests' Vault.
const agentPolicy = `
path "secret/data/*"     { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read"] }
path "transit/decrypt/*" { capabilities = ["update"] }
`

func setupVault(v *testenv.Vault) error {
	return v.WritePolicy("credlet-agent", agentPolicy)
}

type opCounter = testenv.OpCounter

// rig is one source under test with everything it talks to.
type rig struct {
	t      *testing.T
	v      *testenv.Vault
	cred   credspec.Credential
	st     *store.Store
	met    *metrics.Agent
	ops    *opCounter
	client *api.Client
	tokens *lease.Manager
	fc     *clock.Fake // nil: real clock
	src    *source.Vault
}

type rigOpts struct {
	vault    *testenv.Vault // default: the package's
	addr     string         // default: the Vault's address
	fake     bool           // run the source on a fake clock
	refresh  time.Duration  // default 1s
	timeout  time.Duration  // client timeout, default 2s
	method   auth.Method    // default: the root token
	verifier source.Verifier
}

func newRig(t *testing.T, spec string, o rigOpts) *rig {
	t.Helper()
	cred, err := credspec.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	if o.vault == nil {
		o.vault = tv
	}
	if o.addr == "" {
		o.addr = o.vault.Addr
	}
	if o.refresh == 0 {
		o.refresh = time.Second
	}
	if o.timeout == 0 {
		o.timeout = 2 * time.Second
	}
	if o.method == nil {
		o.method = auth.Token(o.vault.RootToken)
	}
	r := &rig{t: t, v: o.vault, cred: cred, met: metrics.New(), ops: &opCounter{}}
	r.client, err = vault.NewClient(vault.ClientConfig{Addr: o.addr, Timeout: o.timeout, Metrics: r.met, Observer: r.ops.Observe})
	if err != nil {
		t.Fatal(err)
	}
	r.st, err = store.New([]store.Declared{{Name: cred.Name}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.st.Close)
	var clk clock.Clock = clock.Real
	if o.fake {
		r.fc = clock.NewFake(time.Now())
		clk = r.fc
	}
	r.met.InitCredential(cred.Name)
	r.tokens = lease.New(r.client, o.method, lease.Options{Metrics: r.met})
	r.src = source.NewVault(r.client, cred, r.st, source.Options{Refresh: o.refresh, Clock: clk, Metrics: r.met,
		Verifier: o.verifier, Tokens: r.tokens})
	return r
}

// start runs the token manager and the source until the test ends. With a
// fake clock it returns once the first check is done.
func (r *rig) start() {
	r.t.Helper()
	var created <-chan struct{}
	if r.fc != nil {
		created = r.fc.TimerCreated()
	}
	r.run(r.tokens.Run, r.src.Run)
	if created != nil {
		r.waitTimer(created)
	}
}

// startTokens runs only the token manager and waits for a token.
func (r *rig) startTokens() {
	r.t.Helper()
	r.run(r.tokens.Run)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.tokens.WaitReady(ctx); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) run(runs ...func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				r.t.Errorf("Run returned %v", err)
			}
		}()
	}
	r.t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.t.Error("Run did not return after cancel")
		}
	})
}

func (r *rig) waitTimer(created <-chan struct{}) {
	r.t.Helper()
	select {
	case <-created:
	case <-time.After(15 * time.Second):
		r.t.Fatal("the source did not arm its next poll")
	}
}

// poll advances the fake clock past the next poll and waits until the
// check is done (the source has armed its next timer).
func (r *rig) poll() {
	r.t.Helper()
	created := r.fc.TimerCreated()
	next, ok := r.fc.NextDeadline()
	if !ok {
		r.t.Fatal("no poll pending")
	}
	r.fc.Advance(next.Sub(r.fc.Now()))
	r.waitTimer(created)
}

// served returns the served version and a copy of its fields.
func (r *rig) served() (int, map[string]string) {
	r.t.Helper()
	set, err := r.st.Acquire(r.cred.Name)
	if err != nil {
		return 0, nil
	}
	defer set.Release()
	out := map[string]string{}
	set.Each(func(name string, value []byte) { out[name] = string(value) })
	return set.Version(), out
}

// waitVersion waits (real time) until version want is served.
func (r *rig) waitVersion(want int, within time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		set, err := r.st.Wait(ctx, r.cred.Name, 0)
		if err != nil {
			v, _ := r.served()
			r.t.Fatalf("version %d not served within %v (serving %d; last error %q)", want, within, v, r.lastError())
		}
		v := set.Version()
		set.Release()
		if v == want {
			return time.Since(start)
		}
		set, err = r.st.Wait(ctx, r.cred.Name, v)
		if err == nil {
			set.Release()
		}
	}
}

func (r *rig) status() store.Status {
	for _, s := range r.st.Status() {
		if s.Name == r.cred.Name {
			return s
		}
	}
	r.t.Fatalf("no status for %s", r.cred.Name)
	return store.Status{}
}

func (r *rig) lastError() string { return r.status().LastError }

func (r *rig) rotations(result string) float64 {
	return counterValue(r.met.Rotations.WithLabelValues(r.cred.Name, result))
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		panic(err)
	}
	return d.GetCounter().GetValue()
}

func gaugeValue(g prometheus.Gauge) float64 {
	var d dto.Metric
	if err := g.Write(&d); err != nil {
		panic(err)
	}
	return d.GetGauge().GetValue()
}

// putKV writes a new version of secret/PATH and returns its number.
func putKV(t testing.TB, v *testenv.Vault, path string, data map[string]any) int {
	t.Helper()
	s, err := v.Client().Logical().Write("secret/data/"+path, map[string]any{"data": data})
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(fmt.Sprint(s.Data["version"]))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func kvVersions(t testing.TB, v *testenv.Vault, op, path string, versions ...int) {
	t.Helper()
	if _, err := v.Client().Logical().Write("secret/"+op+"/"+path, map[string]any{"versions": versions}); err != nil {
		t.Fatal(err)
	}
}

func createdTime(t testing.TB, v *testenv.Vault, path string, version int) time.Time {
	t.Helper()
	s, err := v.Client().Logical().Read("secret/metadata/" + path)
	if err != nil {
		t.Fatal(err)
	}
	vm := s.Data["versions"].(map[string]any)[strconv.Itoa(version)].(map[string]any)
	ct, err := time.Parse(time.RFC3339Nano, vm["created_time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func derivedKey(t testing.TB, v *testenv.Vault, name string) {
	t.Helper()
	if _, err := v.Client().Logical().Write("transit/keys/"+name, map[string]any{"derived": true}); err != nil {
		t.Fatal(err)
	}
}

// encrypt returns Transit ciphertext of plaintext under key and context.
func encrypt(t testing.TB, v *testenv.Vault, key, context, plaintext string) string {
	t.Helper()
	data := map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(plaintext))}
	if context != "" {
		data["context"] = base64.StdEncoding.EncodeToString([]byte(context))
	}
	s, err := v.Client().Logical().Write("transit/encrypt/"+key, data)
	if err != nil {
		t.Fatal(err)
	}
	return s.Data["ciphertext"].(string)
}

// approle creates an AppRole with the agent policy on v.
func approle(t testing.TB, v *testenv.Vault, name string, ttl, maxTTL time.Duration) auth.Method {
	t.Helper()
	roleID, secretID, err := v.CreateAppRole(name, []string{"credlet-agent"}, ttl, maxTTL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rf, sf := filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	if err := os.WriteFile(rf, []byte(roleID), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sf, []byte(secretID), 0o600); err != nil {
		t.Fatal(err)
	}
	return auth.AppRole("approle", rf, sf, false)
}

// auditRequests counts the requests Vault's file audit log recorded, by
// path, for paths containing substr.
func auditRequests(t testing.TB, file, substr string) map[string]int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Type    string `json:"type"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Type != "request" || !strings.Contains(rec.Request.Path, substr) {
			continue
		}
		out[rec.Request.Path]++
	}
	return out
}
