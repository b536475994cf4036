package auth_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
)

// TestJWT logs in through Vault's jwt auth method with TokenRequest tokens
// of a real apiserver, verified against that apiserver's own issuer and
// keys; the claim mappings feed a policy templated on the namespace, so
// acme's login reads acme's prefix and not beta's. The token file is
// re-read at every login.
func TestJWT(t *testing.T) {
	ctx, k := startKube(t)
	const mount, sa = "jwt-authtest", "bot"
	if err := tv.ConfigureJWTAuth(k, mount); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"acme", "beta", "gamma"} {
		if err := k.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{sa, "intruder"} {
			if err := k.CreateServiceAccount(ctx, ns, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	root := tv.Client()
	mounts, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	accessor := mounts[mount+"/"].Accessor
	ns := "{{identity.entity.aliases." + accessor + ".metadata.service_account_namespace}}"
	if err := tv.WritePolicy("jwt-authtest-partner", `
path "secret/data/jwt-authtest/`+ns+`/*" { capabilities = ["read"] }
`); err != nil {
		t.Fatal(err)
	}
	if err := tv.CreateJWTRole(mount, "bot", []string{sa}, []string{"acme", "beta"}, []string{"jwt-authtest-partner"}, 90*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"acme", "beta"} {
		if _, err := root.KVv2("secret").Put(ctx, "jwt-authtest/"+p+"/exa", map[string]any{"api_key": "FAKE-" + p}); err != nil {
			t.Fatal(err)
		}
	}
	token := func(ns, sa, audience string) string {
		tok, err := k.TokenRequest(ctx, ns, sa, audience, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	dir := t.TempDir()
	m := auth.JWT("bot", mount, filepath.Join(dir, "token"))
	if m.Name() != "jwt" {
		t.Errorf("Name() = %q", m.Name())
	}
	c := newClient(t, "", nil)

	steps := []struct {
		name    string
		token   string
		wantErr string // in the error, after "jwt login"
		ns      string // the namespace the login's metadata must carry
	}{
		{name: "projected token of acme, audience vault", token: token("acme", sa, "vault"), ns: "acme"},
		{name: "wrong audience", token: token("acme", sa, "not-vault"), wantErr: "aud"},
		{name: "apiserver audience", token: token("acme", sa, ""), wantErr: "aud"},
		{name: "other service account", token: token("acme", "intruder", "vault"), wantErr: "claim"},
		{name: "namespace not bound", token: token("gamma", sa, "vault"), wantErr: "claim"},
		{name: "not a JWT", token: "FAKE-not-a-jwt", wantErr: "HTTP 400"},
		{name: "kubelet rotated the token", token: token("acme", sa, "vault"), ns: "acme"},
		{name: "beta's pod", token: token("beta", sa, "vault"), ns: "beta"},
	}
	for _, st := range steps {
		writeFile(t, dir, "token", st.token)
		s, err := m.Login(ctx, c)
		if st.wantErr != "" {
			if err == nil || !auth.IsPermanent(err) || !strings.HasPrefix(err.Error(), "jwt login: ") ||
				!strings.Contains(err.Error(), st.wantErr) || vault.StatusCode(err) != 400 {
				t.Fatalf("%s: err = %v (permanent %v), want a permanent HTTP 400 naming jwt login and %q", st.name, err, auth.IsPermanent(err), st.wantErr)
			}
			if strings.Contains(err.Error(), st.token) {
				t.Fatalf("%s: the error holds the token", st.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if s.Auth.LeaseDuration != 90 || s.Auth.Metadata["service_account_namespace"] != st.ns ||
			s.Auth.Metadata["service_account_name"] != sa {
			t.Fatalf("%s: ttl %d metadata %v", st.name, s.Auth.LeaseDuration, s.Auth.Metadata)
		}
		// The templated policy: own prefix readable, the other partner's not.
		pc := newClient(t, "", nil)
		pc.SetToken(s.Auth.ClientToken)
		other := map[string]string{"acme": "beta", "beta": "acme"}[st.ns]
		if got, err := pc.KVv2("secret").Get(ctx, "jwt-authtest/"+st.ns+"/exa"); err != nil || got.Data["api_key"] != "FAKE-"+st.ns {
			t.Errorf("%s: read own prefix: %v", st.name, err)
		}
		if _, err := pc.KVv2("secret").Get(ctx, "jwt-authtest/"+other+"/exa"); vault.StatusCode(err) != 403 {
			t.Errorf("%s: %s read %s's prefix: %v", st.name, st.ns, other, err)
		}
	}

	// A missing token file is permanent and names the login and the file.
	_, err = auth.JWT("bot", mount, filepath.Join(dir, "missing")).Login(ctx, c)
	if err == nil || !auth.IsPermanent(err) || !strings.Contains(err.Error(), "jwt login: service account token file") {
		t.Errorf("missing file: %v", err)
	}
}
