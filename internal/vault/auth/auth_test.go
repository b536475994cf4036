package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
)

var tv *testenv.Vault

func TestMain(m *testing.M) { testenv.MainVault(m, &tv) }

type opCounter = testenv.OpCounter

// startKube starts an apiserver of the test's own (stopped at its end)
// for the kubernetes and jwt logins, and a context bounding the test.
func startKube(t *testing.T) (context.Context, *testenv.Kube) {
	t.Helper()
	testenv.NeedServers(t)
	testenv.RequireBinary(t, testenv.BinKubeAPIServer)
	testenv.RequireBinary(t, testenv.BinEtcd)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	k, err := testenv.StartKube(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Stop() })
	return ctx, k
}

func newClient(t *testing.T, addr string, obs vault.Observer) *api.Client {
	t.Helper()
	if addr == "" {
		addr = tv.Addr
	}
	c, err := vault.NewClient(vault.ClientConfig{Addr: addr, Timeout: 2 * time.Second, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wrappedSecretID returns a response-wrapping token holding a new secret_id
// of role.
func wrappedSecretID(t *testing.T, role string) string {
	t.Helper()
	root := tv.Client()
	root.SetWrappingLookupFunc(func(string, string) string { return "120s" })
	s, err := root.Logical().Write("auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s == nil || s.WrapInfo == nil || s.WrapInfo.Token == "" {
		t.Fatal("no wrapping token")
	}
	return s.WrapInfo.Token
}

func TestAppRoleLogin(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	roleID, secretID, err := tv.CreateAppRole("authtest-plain", []string{"default"}, time.Minute, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := auth.AppRole("", writeFile(t, dir, "role_id", roleID), writeFile(t, dir, "secret_id", secretID), false)
	if m.Name() != "approle" {
		t.Errorf("Name() = %q", m.Name())
	}
	c := newClient(t, "", nil)
	s, err := m.Login(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if s.Auth.ClientToken == "" || s.Auth.Accessor == "" || s.Auth.LeaseDuration != 60 || !s.Auth.Renewable {
		t.Errorf("auth = ttl %d renewable %v accessor %q", s.Auth.LeaseDuration, s.Auth.Renewable, s.Auth.Accessor)
	}
	if c.Token() != "" {
		t.Error("Login set the token on the client; the lease manager does that")
	}
}

func TestAppRoleErrors(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	roleID, _, err := tv.CreateAppRole("authtest-errors", []string{"default"}, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	roleFile := writeFile(t, dir, "role_id", roleID)
	badSecret := writeFile(t, dir, "bad_secret", "FAKE-not-a-secret-id")
	empty := writeFile(t, dir, "empty", "  ")
	tests := []struct {
		name          string
		addr          string
		method        auth.Method
		wantPermanent bool
	}{
		{"wrong secret_id", "", auth.AppRole("approle", roleFile, badSecret, false), true},
		{"missing role_id file", "", auth.AppRole("approle", filepath.Join(dir, "nope"), badSecret, false), true},
		{"empty secret_id file", "", auth.AppRole("approle", roleFile, empty, false), true},
		{"no such mount", "", auth.AppRole("approle-missing", roleFile, badSecret, false), true},
		{"vault unreachable", "http://127.0.0.1:1", auth.AppRole("approle", roleFile, badSecret, false), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.method.Login(context.Background(), newClient(t, tt.addr, nil))
			if err == nil {
				t.Fatal("login succeeded")
			}
			if got := auth.IsPermanent(err); got != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.wantPermanent)
			}
		})
	}
}

func TestAppRoleWrappedSecretID(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const role = "authtest-wrapped"
	roleID, _, err := tv.CreateAppRole(role, []string{"default"}, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	roleFile := writeFile(t, dir, "role_id", roleID)
	secretFile := writeFile(t, dir, "secret_id", wrappedSecretID(t, role))
	ctx := context.Background()

	var ops opCounter
	c := newClient(t, "", ops.Observe)
	m := auth.AppRole("approle", roleFile, secretFile, true)
	for i := range 2 {
		if _, err := m.Login(ctx, c); err != nil {
			t.Fatalf("login %d: %v", i+1, err)
		}
	}
	if n := ops.Get(vault.OpUnwrap); n != 1 {
		t.Fatalf("unwrapped %d times for two logins, want once", n)
	}

	// A second agent (or an attacker who got there first) finds the token used.
	_, err = auth.AppRole("approle", roleFile, secretFile, true).Login(ctx, c)
	if !errors.Is(err, auth.ErrWrappingToken) || !auth.IsPermanent(err) {
		t.Fatalf("second unwrap: err = %v, want permanent ErrWrappingToken", err)
	}

	// A new wrapping token in the file is unwrapped at the next login.
	writeFile(t, dir, "secret_id", wrappedSecretID(t, role))
	if _, err := m.Login(ctx, c); err != nil {
		t.Fatalf("login after the file changed: %v", err)
	}
	if n := ops.Get(vault.OpUnwrap); n != 2 {
		t.Fatalf("unwraps = %d after a new token, want 2", n)
	}
}

// TestWrappedFromElsewhere: a wrapping token not made by this AppRole mount's
// secret-id endpoint is refused before it is unwrapped.
func TestWrappedFromElsewhere(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	roleID, _, err := tv.CreateAppRole("authtest-elsewhere", []string{"default"}, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	root := tv.Client()
	root.SetWrappingLookupFunc(func(string, string) string { return "120s" })
	s, err := root.Logical().Write("sys/wrapping/wrap", map[string]any{"secret_id": "FAKE-planted"})
	if err != nil {
		t.Fatal(err)
	}
	wt := s.WrapInfo.Token
	dir := t.TempDir()
	m := auth.AppRole("approle", writeFile(t, dir, "role_id", roleID), writeFile(t, dir, "secret_id", wt), true)
	_, err = m.Login(context.Background(), newClient(t, "", nil))
	if !errors.Is(err, auth.ErrWrappingToken) || !auth.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent ErrWrappingToken", err)
	}
	// Not consumed: the lookup came first.
	if _, err := tv.Client().Logical().Write("sys/wrapping/lookup", map[string]any{"token": wt}); err != nil {
		t.Fatalf("planted token was consumed: %v", err)
	}
}

func TestToken(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	root := tv.Client()
	child, err := root.Auth().Token().Create(&api.TokenCreateRequest{TTL: "1h", Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		token         string
		wantTTL       [2]int // inclusive range
		wantRenewable bool
		wantErr       bool
	}{
		{name: "root never expires", token: tv.RootToken, wantTTL: [2]int{0, 0}},
		{name: "child", token: child.Auth.ClientToken, wantTTL: [2]int{3590, 3600}, wantRenewable: true},
		{name: "unknown token", token: "hvs.FAKEFAKEFAKEFAKEFAKEFAKE", wantErr: true},
		{name: "empty", token: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := auth.Token(tt.token).Login(context.Background(), newClient(t, "", nil))
			if tt.wantErr {
				if err == nil || !auth.IsPermanent(err) {
					t.Fatalf("err = %v, want a permanent error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := s.Auth.LeaseDuration; d < tt.wantTTL[0] || d > tt.wantTTL[1] || s.Auth.Renewable != tt.wantRenewable {
				t.Errorf("ttl %d renewable %v, want %v %v", d, s.Auth.Renewable, tt.wantTTL, tt.wantRenewable)
			}
		})
	}
}
