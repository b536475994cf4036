package testenv_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	kubeauth "github.com/hashicorp/vault/api/auth/kubernetes"
	"golang.org/x/sync/errgroup"

	"github.com/credlet/credlet/internal/testenv"
)

// One Vault and one kube-apiserver for the whole package; each test uses its
// own paths, keys, roles and namespaces.
var (
	vault *testenv.Vault
	kube  *testenv.Kube

	vaultStartTime, kubeStartTime time.Duration
)

func TestMain(m *testing.M) {
	runOrphanHelper() // when this binary is TestServersDieWithTestBinary's child
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		var g errgroup.Group
		g.Go(func() (err error) {
			t0 := time.Now()
			vault, err = s.StartVault(ctx)
			vaultStartTime = time.Since(t0)
			return err
		})
		g.Go(func() (err error) {
			t0 := time.Now()
			kube, err = s.StartKube(ctx, testenv.WithWebhooks(probeWebhooks()))
			kubeStartTime = time.Since(t0)
			return err
		})
		if err := g.Wait(); err != nil {
			return err
		}
		return vault.ConfigureKubernetesAuth(kube, "")
	})
}

func TestStartTimes(t *testing.T) {
	testenv.NeedServers(t)
	t.Logf("StartVault %v (incl. transit + approle mounts), StartKube %v", vaultStartTime, kubeStartTime)
	if !strings.HasPrefix(vault.Addr, "http://127.0.0.1:") {
		t.Errorf("vault Addr = %q, want http://127.0.0.1:PORT", vault.Addr)
	}
	if !strings.HasPrefix(kube.Config.Host, "https://127.0.0.1:") {
		t.Errorf("apiserver Host = %q, want https://127.0.0.1:PORT", kube.Config.Host)
	}
}

// kubeLoginSetup makes namespace ns with ServiceAccounts "bot" and
// "intruder", a policy reading secret/data/<ns>/*, and a role for ns/bot.
func kubeLoginSetup(t *testing.T, ns string) (role, policy string) {
	t.Helper()
	ctx := t.Context()
	for _, sa := range []string{"bot", "intruder"} {
		if err := kube.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if err := kube.CreateServiceAccount(ctx, ns, sa); err != nil {
			t.Fatal(err)
		}
	}
	role, policy = ns+"-bot", ns+"-read"
	if err := vault.WritePolicy(policy, fmt.Sprintf(`path "secret/data/%s/*" { capabilities = ["read"] }`, ns)); err != nil {
		t.Fatal(err)
	}
	if err := vault.CreateKubernetesRole("", role, []string{"bot"}, []string{ns}, []string{policy}, 10*time.Minute, 20*time.Minute); err != nil {
		t.Fatal(err)
	}
	return role, policy
}

func kubeLogin(ctx context.Context, role, jwt string) (*api.Client, *api.Secret, error) {
	c, err := vault.NewClient("")
	if err != nil {
		return nil, nil, err
	}
	a, err := kubeauth.NewKubernetesAuth(role, kubeauth.WithServiceAccountToken(jwt))
	if err != nil {
		return nil, nil, err
	}
	s, err := c.Auth().Login(ctx, a)
	return c, s, err
}

func TestKubernetesLogin(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	const ns = "k8s-login"
	role, policy := kubeLoginSetup(t, ns)

	jwt, err := kube.TokenRequest(ctx, ns, "bot", "vault", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, s, err := kubeLogin(ctx, role, jwt)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if got, want := s.Auth.Policies, []string{"default", policy}; !slices.Equal(got, want) {
		t.Errorf("policies = %q, want %q", got, want)
	}
	if got := s.Auth.Metadata["service_account_namespace"]; got != ns {
		t.Errorf("metadata service_account_namespace = %q, want %q", got, ns)
	}
	if got := s.Auth.Metadata["service_account_name"]; got != "bot" {
		t.Errorf("metadata service_account_name = %q, want bot", got)
	}
	if s.Auth.LeaseDuration != 600 {
		t.Errorf("token TTL = %ds, want 600", s.Auth.LeaseDuration)
	}

	// The policies are in force: ns's own path reads, another does not.
	root := vault.Client()
	if _, err := root.KVv2("secret").Put(ctx, ns+"/acme", map[string]any{"api_key": "FAKE-api-key-123"}); err != nil {
		t.Fatal(err)
	}
	kv, err := c.KVv2("secret").Get(ctx, ns+"/acme")
	if err != nil {
		t.Fatalf("read own path: %v", err)
	}
	if kv.Data["api_key"] != "FAKE-api-key-123" {
		t.Errorf("api_key = %v", kv.Data["api_key"])
	}
	if _, err := c.KVv2("secret").Get(ctx, "other-partner/acme"); !isStatus(err, http.StatusForbidden) {
		t.Errorf("read another path: err = %v, want 403", err)
	}
}

func TestKubernetesLoginRefused(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	const ns = "k8s-refused"
	role, _ := kubeLoginSetup(t, ns)
	const otherNS = "k8s-refused-other"
	if err := kube.EnsureNamespace(ctx, otherNS); err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, otherNS, "bot"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		ns, sa   string
		audience string
		wantErr  bool
	}{
		{name: "bound SA, audience vault", ns: ns, sa: "bot", audience: "vault"},
		{name: "wrong audience", ns: ns, sa: "bot", audience: "not-vault", wantErr: true},
		{name: "apiserver audience", ns: ns, sa: "bot", audience: "", wantErr: true},
		{name: "wrong SA", ns: ns, sa: "intruder", audience: "vault", wantErr: true},
		{name: "same SA name, other namespace", ns: otherNS, sa: "bot", audience: "vault", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwt, err := kube.TokenRequest(ctx, tt.ns, tt.sa, tt.audience, 10*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			_, s, err := kubeLogin(ctx, role, jwt)
			if !tt.wantErr {
				if err != nil || s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
					t.Fatalf("login: %v, want a token", err)
				}
				return
			}
			if err == nil {
				t.Fatal("login succeeded, want it refused")
			}
			// Refused by Vault (403), not lost on the way.
			if !isStatus(err, http.StatusForbidden) {
				t.Errorf("err = %v, want HTTP 403", err)
			}
		})
	}
}

func TestAppRoleLogin(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	if err := vault.WritePolicy("approle-test-read", `path "secret/data/approle-test/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := vault.CreateAppRole("approle-test", []string{"approle-test-read"}, 5*time.Minute, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vault.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if got, want := s.Auth.Policies, []string{"approle-test-read", "default"}; !slices.Equal(got, want) {
		t.Errorf("policies = %q, want %q", got, want)
	}
	if s.Auth.LeaseDuration != 300 || !s.Auth.Renewable {
		t.Errorf("token ttl %ds renewable %t, want 300s renewable", s.Auth.LeaseDuration, s.Auth.Renewable)
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": "FAKE-wrong-secret-id"}); err == nil {
		t.Error("login with a wrong secret_id succeeded")
	}
}

func TestKVRoundTrip(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	kv := vault.Client().KVv2(testenv.KVMount)
	const p = "kv-roundtrip/acme/zerodha"
	for i, key := range []string{"FAKE-api-key-123", "FAKE-api-key-456"} {
		w, err := kv.Put(ctx, p, map[string]any{"api_key": key, "api_secret": "FAKE-secret"})
		if err != nil {
			t.Fatal(err)
		}
		if w.VersionMetadata.Version != i+1 {
			t.Errorf("written version = %d, want %d", w.VersionMetadata.Version, i+1)
		}
		r, err := kv.Get(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Data["api_key"] != key || r.VersionMetadata.Version != i+1 {
			t.Errorf("read %v v%d, want %s v%d", r.Data["api_key"], r.VersionMetadata.Version, key, i+1)
		}
	}
	old, err := kv.GetVersion(ctx, p, 1)
	if err != nil || old.Data["api_key"] != "FAKE-api-key-123" {
		t.Errorf("version 1 = %v, %v", old, err)
	}
}

func TestTransitRoundTrip(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	l := vault.Client().Logical()
	b64 := base64.StdEncoding.EncodeToString
	plaintext := b64([]byte("FAKE-api-key-123"))

	encrypt := func(key, context string) (string, error) {
		data := map[string]any{"plaintext": plaintext}
		if context != "" {
			data["context"] = b64([]byte(context))
		}
		s, err := l.WriteWithContext(ctx, "transit/encrypt/"+key, data)
		if err != nil {
			return "", err
		}
		return s.Data["ciphertext"].(string), nil
	}
	decrypt := func(key, ciphertext, context string) (string, error) {
		data := map[string]any{"ciphertext": ciphertext}
		if context != "" {
			data["context"] = b64([]byte(context))
		}
		s, err := l.WriteWithContext(ctx, "transit/decrypt/"+key, data)
		if err != nil {
			return "", err
		}
		return s.Data["plaintext"].(string), nil
	}

	if _, err := l.WriteWithContext(ctx, "transit/keys/transit-plain", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteWithContext(ctx, "transit/keys/transit-derived", map[string]any{"derived": true}); err != nil {
		t.Fatal(err)
	}

	ct, err := encrypt("transit-plain", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ct, "vault:v1:") {
		t.Errorf("ciphertext %q, want vault:v1: prefix", ct)
	}
	if pt, err := decrypt("transit-plain", ct, ""); err != nil || pt != plaintext {
		t.Errorf("decrypt = %q, %v; want %q", pt, err, plaintext)
	}

	ct, err = encrypt("transit-derived", "partner-acme")
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := decrypt("transit-derived", ct, "partner-acme"); err != nil || pt != plaintext {
		t.Errorf("derived decrypt = %q, %v; want %q", pt, err, plaintext)
	}
	if pt, err := decrypt("transit-derived", ct, "partner-other"); err == nil {
		t.Errorf("decrypt under another context = %q, want an error", pt)
	}
	if _, err := encrypt("transit-derived", ""); err == nil {
		t.Error("encrypt with a derived key and no context succeeded")
	}
}

func TestProxyCutRestore(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	p, err := testenv.StartProxy(vault.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := vault.NewClient(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	c.SetClientTimeout(5 * time.Second)
	health := func() error {
		_, err := c.Sys().HealthWithContext(ctx)
		return err
	}
	if err := health(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	// A live keep-alive connection through the proxy.
	conn, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	get := func() error {
		if _, err := fmt.Fprintf(conn, "GET /v1/sys/health HTTP/1.1\r\nHost: vault\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("live connection: %v", err)
	}

	addr := p.Addr
	p.Cut()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("live connection after Cut: read err = %v, want it closed", err)
	}
	if err := health(); err == nil {
		t.Error("request after Cut succeeded")
	}
	if _, err := vault.Client().Sys().HealthWithContext(ctx); err != nil {
		t.Errorf("vault itself after Cut: %v", err)
	}

	p.Restore()
	if p.Addr != addr {
		t.Errorf("Addr changed from %s to %s", addr, p.Addr)
	}
	if err := health(); err != nil {
		t.Errorf("request after Restore: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestProxyLatency: SetLatency slows every answer through the proxy, and
// 0 makes it fast again.
func TestProxyLatency(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	p, err := testenv.StartProxy(vault.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := vault.NewClient(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	timed := func() time.Duration {
		start := time.Now()
		if _, err := c.Sys().HealthWithContext(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	timed() // connect
	const latency = 400 * time.Millisecond
	p.SetLatency(latency)
	if d := timed(); d < latency {
		t.Errorf("health with latency %v took %v", latency, d)
	}
	p.SetLatency(0)
	if d := timed(); d >= latency {
		t.Errorf("health without latency took %v", d)
	}
}

func TestPauseResume(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	c := vault.Client()
	c.SetClientTimeout(300 * time.Millisecond)
	if _, err := c.Sys().HealthWithContext(ctx); err != nil {
		t.Fatalf("before Pause: %v", err)
	}
	if err := vault.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vault.Resume() }) // never leave the shared server stopped

	t0 := time.Now()
	_, err := c.Sys().HealthWithContext(ctx)
	if !isTimeout(err) {
		t.Errorf("paused: err = %v, want a timeout", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("paused request took %v, want ~300ms", d)
	}

	if err := vault.Resume(); err != nil {
		t.Fatal(err)
	}
	c.SetClientTimeout(5 * time.Second)
	if _, err := c.Sys().HealthWithContext(ctx); err != nil {
		t.Errorf("after Resume: %v", err)
	}
}

func isStatus(err error, code int) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func TestFileAudit(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "audit.log")
	if err := vault.EnableFileAudit(file); err != nil {
		t.Fatal(err)
	}
	if err := vault.EnableFileAudit(file); err != nil {
		t.Fatalf("enabling the same file again: %v", err)
	}
	defer func() {
		if err := vault.DisableFileAudit(file); err != nil {
			t.Error(err)
		}
	}()
	const p = "file-audit/marker"
	if _, err := vault.Client().KVv2("secret").Put(ctx, p, map[string]any{"api_key": "FAKE-api-key-123"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var requests, responses int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var entry struct {
			Type    string `json:"type"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if entry.Request.Path == "secret/data/"+p {
			switch entry.Type {
			case "request":
				requests++
			case "response":
				responses++
			}
		}
	}
	if requests != 1 || responses != 1 {
		t.Errorf("audit has %d requests and %d responses for %s, want 1 and 1", requests, responses, p)
	}
	if strings.Contains(string(b), "FAKE-api-key-123") {
		t.Error("audit log holds the secret value in clear")
	}
}

// TestVaultStopWhilePaused uses a Vault of its own: Stop must not wait on a
// stopped (SIGSTOP) server, and must remove its data.
func TestVaultStopWhilePaused(t *testing.T) {
	testenv.NeedServers(t)
	v, err := testenv.StartVault(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	pid := v.PID()
	if err := v.Pause(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := v.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Stop of a paused server took %v", d)
	}
	if alive(pid) {
		t.Errorf("pid %d still running after Stop", pid)
	}
	if _, err := os.Stat(filepath.Dir(v.LogFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir after Stop: %v, want it removed", err)
	}
	if err := v.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := v.Resume(); err == nil {
		t.Error("Resume after Stop succeeded")
	}
}
