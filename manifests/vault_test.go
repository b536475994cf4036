package manifests

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/credlet/credlet/internal/creds"
	"github.com/credlet/credlet/internal/testenv"
)

// TestVaultSetup runs manifests/vault/setup.sh (twice: it converges) against
// a real Vault and kube-apiserver, then proves what each identity may do:
// a pod of partner acme reads and decrypts acme's credentials and is denied
// beta's; a pod of an unknown namespace or with the wrong audience can't
// log in; the same holds for jwt auth (configured by OIDC discovery of the
// apiserver's own issuer, and once more from its public keys); the AppRole
// bot reads acme's only; the operator writes with Transit through `creds`
// but cannot decrypt.
func TestVaultSetup(t *testing.T) {
	c := kubeClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := testenv.RequireBinary(t, testenv.BinVault)

	// The token reviewer, as manifests/vault/token-reviewer.yaml makes it
	// (there is no token controller here, so a TokenRequest stands in for
	// the Secret's long-lived token).
	if err := kube.EnsureNamespace(ctx, "credlet-system"); err != nil {
		t.Fatal(err)
	}
	for _, d := range loadDocs(t, "manifests/vault") {
		obj, err := decode(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount, *rbacv1.ClusterRoleBinding:
			if err := c.Create(ctx, o.(client.Object)); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("%s: %v", d, err)
			}
		}
	}
	reviewer, err := kube.TokenRequest(ctx, "credlet-system", "vault-token-reviewer", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issuer, keys, err := kube.Issuer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"VAULT="+bin, "VAULT_ADDR="+vlt.Addr, "VAULT_TOKEN="+vlt.RootToken, "HOME="+dir,
		"PARTNERS=acme beta", "APPROLE_BOTS=acme",
		"K8S_HOST="+kube.Config.Host, "K8S_CA_CERT="+write("ca.crt", string(kube.Config.CAData)),
		"TOKEN_REVIEWER_JWT="+write("reviewer.jwt", reviewer), "JWT_ISSUER="+issuer)
	for range 2 {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "manifests/vault/setup.sh"))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("setup.sh: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), ">> done") || strings.Contains(string(out), vlt.RootToken) {
			t.Fatalf("setup.sh output:\n%s", out)
		}
	}
	// jwt auth from the issuer's public keys instead of OIDC discovery.
	keysEnv := append(env, "JWT_AUTH_MOUNT=jwt-keys", "JWT_PUBKEYS="+write("sa.pub", strings.Join(keys, "")))
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "manifests/vault/setup.sh"))
	cmd.Env = keysEnv
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "at the keys in") {
		t.Fatalf("setup.sh with JWT_PUBKEYS: %v\n%s", err, out)
	}
	// Bad input is one line naming the problem.
	bad := exec.CommandContext(ctx, "bash", filepath.Join(root, "manifests/vault/setup.sh"))
	bad.Env = append(env, "PARTNERS=Acme_Corp")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), `partner "Acme_Corp"`) {
		t.Fatalf("bad partner name: %v %s", err, out)
	}

	root := vlt.Client()
	// The operator writes both partners' credentials through `creds`.
	op, err := root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"credlet-operator"}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := creds.NewVault(creds.VaultConfig{Addr: vlt.Addr, Getenv: func(k string) string {
		if k == "VAULT_TOKEN" {
			return op.Auth.ClientToken
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	for _, p := range []string{"acme", "beta"} {
		_, err := creds.Put(ctx, ob, "secret/partners/"+p+"/zerodha",
			map[string][]byte{"api_key": []byte("FAKE-" + p + "-key"), "api_secret": []byte("FAKE-" + p + "-secret")},
			creds.WriteOptions{TransitKey: "credlet-partners", Context: p})
		if err != nil {
			t.Fatalf("operator put for %s: %v", p, err)
		}
	}
	if _, err := creds.Rotate(ctx, ob, "secret/partners/acme/zerodha", map[string][]byte{"api_key": []byte("FAKE-acme-key-2")},
		creds.WriteOptions{TransitKey: "credlet-partners", Context: "acme"}); err != nil {
		t.Fatalf("operator rotate: %v", err)
	}
	opClient := clientWith(t, op.Auth.ClientToken)
	if _, err := opClient.Logical().Write("transit/decrypt/credlet-partners", map[string]any{"ciphertext": "vault:v1:AAAA", "context": b64("acme")}); !isForbidden(err) {
		t.Errorf("the operator may decrypt: %v", err)
	}

	// A pod of partner acme.
	if err := kube.EnsureNamespace(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, "acme", "bot"); err != nil {
		t.Fatal(err)
	}
	jwt, err := kube.TokenRequest(ctx, "acme", "bot", "vault", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	acme := login(t, "kubernetes", map[string]any{"role": "credlet-partner", "jwt": jwt})
	checkPartnerAccess(t, acme, "acme", "beta")

	// Wrong audience, unknown namespace: no login.
	wrongAud, _ := kube.TokenRequest(ctx, "acme", "bot", "", 10*time.Minute)
	if _, err := root.Logical().Write("auth/kubernetes/login", map[string]any{"role": "credlet-partner", "jwt": wrongAud}); err == nil {
		t.Error("a token without audience vault logged in")
	}
	if err := kube.EnsureNamespace(ctx, "gamma"); err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, "gamma", "bot"); err != nil {
		t.Fatal(err)
	}
	gamma, _ := kube.TokenRequest(ctx, "gamma", "bot", "vault", 10*time.Minute)
	if _, err := root.Logical().Write("auth/kubernetes/login", map[string]any{"role": "credlet-partner", "jwt": gamma}); err == nil {
		t.Error("a namespace that is not a partner logged in")
	}

	// The same pod through jwt auth, both ways of configuring it: no
	// TokenReview, the same per-partner policy.
	for _, mount := range []string{"jwt", "jwt-keys"} {
		acme := login(t, mount, map[string]any{"role": "credlet-partner", "jwt": jwt})
		checkPartnerAccess(t, acme, "acme", "beta")
		for what, tok := range map[string]string{"wrong audience": wrongAud, "a namespace that is not a partner": gamma} {
			if _, err := root.Logical().Write("auth/"+mount+"/login", map[string]any{"role": "credlet-partner", "jwt": tok}); err == nil {
				t.Errorf("%s: %s logged in", mount, what)
			}
		}
	}

	// The AppRole bot of acme.
	rid, err := root.Logical().Read("auth/approle/role/credlet-bot-acme/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/approle/role/credlet-bot-acme/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	bot := login(t, "approle", map[string]any{"role_id": rid.Data["role_id"], "secret_id": sid.Data["secret_id"]})
	checkPartnerAccess(t, bot, "acme", "beta")
}

// checkPartnerAccess: tok reads and decrypts own's credentials (the
// rotated version) and may not read other's.
func checkPartnerAccess(t *testing.T, tok, own, other string) {
	t.Helper()
	c := clientWith(t, tok)
	if _, err := c.Logical().Read("secret/metadata/partners/" + own + "/zerodha"); err != nil {
		t.Errorf("metadata of %s: %v", own, err)
	}
	s, err := c.Logical().Read("secret/data/partners/" + own + "/zerodha")
	if err != nil || s == nil {
		t.Fatalf("read %s: %v", own, err)
	}
	data := s.Data["data"].(map[string]any)
	ct := data["api_key"].(string)
	if !strings.HasPrefix(ct, "vault:v1:") {
		t.Fatalf("api_key is not ciphertext in KV")
	}
	d, err := c.Logical().Write("transit/decrypt/credlet-partners", map[string]any{"ciphertext": ct, "context": b64(own)})
	if err != nil {
		t.Fatalf("decrypt %s: %v", own, err)
	}
	pt, _ := base64.StdEncoding.DecodeString(d.Data["plaintext"].(string))
	if string(pt) != "FAKE-"+own+"-key-2" {
		t.Errorf("decrypted %s api_key is not the rotated value", own)
	}
	if _, err := c.Logical().Read("secret/data/partners/" + other + "/zerodha"); !isForbidden(err) {
		t.Errorf("%s's identity read %s's credentials: %v", own, other, err)
	}
	if _, err := c.Logical().Read("secret/metadata/partners/" + other + "/zerodha"); !isForbidden(err) {
		t.Errorf("%s's identity read %s's metadata: %v", own, other, err)
	}
	if _, err := c.Logical().Write("secret/data/partners/"+own+"/zerodha", map[string]any{"data": map[string]any{"x": "FAKE"}}); !isForbidden(err) {
		t.Errorf("%s's identity may write: %v", own, err)
	}
}

func clientWith(t *testing.T, token string) *api.Client {
	t.Helper()
	c, err := vlt.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

func login(t *testing.T, mount string, body map[string]any) string {
	t.Helper()
	c := clientWith(t, "")
	s, err := c.Logical().Write("auth/"+mount+"/login", body)
	if err != nil || s == nil || s.Auth == nil {
		t.Fatalf("%s login: %v", mount, err)
	}
	return s.Auth.ClientToken
}

func isForbidden(err error) bool {
	re, ok := err.(*api.ResponseError)
	return ok && re.StatusCode == 403
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
