package auth_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/vault/auth"
)

// TestKubernetes logs in with a TokenRequest token from a real apiserver,
// reviewed by Vault through TokenReview, and re-reads the file at every
// login.
func TestKubernetes(t *testing.T) {
	ctx, k := startKube(t)
	const mount, ns, sa = "k8s-authtest", "acme", "bot"
	if err := tv.ConfigureKubernetesAuth(k, mount); err != nil {
		t.Fatal(err)
	}
	if err := k.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sa, "intruder"} {
		if err := k.CreateServiceAccount(ctx, ns, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := tv.CreateKubernetesRole(mount, "bot", []string{sa}, []string{ns}, []string{"default"}, 90*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	token := func(sa, audience string) string {
		tok, err := k.TokenRequest(ctx, ns, sa, audience, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	m := auth.Kubernetes("bot", mount, file)
	if m.Name() != "kubernetes" {
		t.Errorf("Name() = %q", m.Name())
	}
	c := newClient(t, "", nil)

	steps := []struct {
		name          string
		token         string
		wantErr       bool
		wantPermanent bool
	}{
		{name: "projected token, audience vault", token: token(sa, "vault")},
		{name: "wrong audience", token: token(sa, "not-vault"), wantErr: true, wantPermanent: true},
		{name: "other service account", token: token("intruder", "vault"), wantErr: true, wantPermanent: true},
		{name: "kubelet rotated the token", token: token(sa, "vault")},
	}
	for _, st := range steps {
		writeFile(t, dir, "token", st.token)
		s, err := m.Login(ctx, c)
		if st.wantErr {
			if err == nil || auth.IsPermanent(err) != st.wantPermanent {
				t.Fatalf("%s: err = %v, want permanent=%v", st.name, err, st.wantPermanent)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if s.Auth.LeaseDuration != 90 || s.Auth.Metadata["service_account_namespace"] != ns {
			t.Errorf("%s: ttl %d metadata %v", st.name, s.Auth.LeaseDuration, s.Auth.Metadata)
		}
	}
}
