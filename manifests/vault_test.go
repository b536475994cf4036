package manifests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/credlet/credlet/internal/agentcmd"
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
	checkKeyRotation(t, ctx, root, env)

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
	// An expiring token, with its expiry in custom metadata (the operator
	// policy's metadata update).
	exp := time.Now().Add(20 * time.Hour).UTC().Truncate(time.Second)
	var putOut bytes.Buffer
	if err := creds.Run(ctx, ob, creds.Invocation{Command: "put", Args: []string{"secret/partners/acme/kite-oauth", "access_token=-"}, ExpiresAt: exp.Format(time.RFC3339)},
		strings.NewReader("FAKE-acme-oauth\n"), &putOut, &putOut); err != nil {
		t.Fatalf("operator put --expires-at: %v\n%s", err, putOut.String())
	}
	if got, err := ob.ExpiresAt(ctx, "secret/partners/acme/kite-oauth"); err != nil || !got.Equal(exp) {
		t.Fatalf("expires_at written by the operator: %v %v; want %v", got, err, exp)
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

	checkKeyMaintenance(t, ctx)
}

// checkKeyMaintenance runs the key-maintenance CronJob's containers
// (manifests/key-maintenance/cronjob.yaml) as written, in order, with the
// agent's own command line: the real Kubernetes login of the CronJob's
// ServiceAccount against the role setup.sh wrote, `creds keys` and then
// `creds rewrap` for acme after the Transit key rotated. Only the Vault
// address and the token file's path are this test's.
func checkKeyMaintenance(t *testing.T, ctx context.Context) {
	t.Helper()
	root := vlt.Client()
	if _, err := root.Logical().Write("transit/keys/credlet-partners/rotate", nil); err != nil {
		t.Fatal(err)
	}
	var cj batchv1.CronJob
	for _, d := range loadDocs(t, "manifests/key-maintenance") {
		if d.kind == "CronJob" {
			obj, err := decode(d)
			if err != nil {
				t.Fatal(err)
			}
			cj = *obj.(*batchv1.CronJob)
		}
		if d.kind == "ServiceAccount" {
			obj, _ := decode(d)
			sa := obj.(*corev1.ServiceAccount)
			if err := kube.CreateServiceAccount(ctx, sa.Namespace, sa.Name); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	jwt, err := kube.TokenRequest(ctx, cj.Namespace, pod.ServiceAccountName, "vault", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	steps := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
	if len(steps) < 2 || steps[0].Name != "keys" {
		t.Fatalf("the CronJob's first step is %q; want keys, then one rewrap per partner", steps[0].Name)
	}
	for _, c := range steps {
		for _, e := range c.Env {
			switch e.Name {
			case "VAULT_ADDR":
				t.Setenv(e.Name, vlt.Addr)
			case "CREDLET_TOKEN_FILE":
				t.Setenv(e.Name, tokenFile)
			default:
				t.Setenv(e.Name, e.Value)
			}
		}
		t.Setenv("VAULT_TOKEN", "") // the login must stand on its own
		var out, errb bytes.Buffer
		if code := agentcmd.Main(c.Args, strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("CronJob step %s (%v): exit %d\n%s%s", c.Name, c.Args, code, out.String(), errb.String())
		}
		t.Logf("step %s:\n%s", c.Name, out.String())
		if strings.Contains(out.String()+errb.String(), "FAKE") {
			t.Fatalf("step %s printed a value", c.Name)
		}
		if c.Name == "rewrap-acme" && !strings.Contains(out.String(), "rewrapped secret/partners/acme/zerodha: version 2 -> 3 (api_key v1, api_secret v1 -> key v2)") {
			t.Errorf("rewrap-acme did not rewrap acme's set:\n%s", out.String())
		}
	}
	acme, err := root.KVv2("secret").Get(ctx, "partners/acme/zerodha")
	if err != nil {
		t.Fatal(err)
	}
	if ct, _ := acme.Data["api_key"].(string); !strings.HasPrefix(ct, "vault:v2:") {
		t.Errorf("acme's api_key after the CronJob: %.9s; want key version 2", ct)
	}
	beta, err := root.KVv2("secret").Get(ctx, "partners/beta/zerodha")
	if err != nil {
		t.Fatal(err)
	}
	if beta.VersionMetadata.Version != 1 {
		t.Errorf("beta (no container in the CronJob) was written: version %d", beta.VersionMetadata.Version)
	}
	if acme.CustomMetadata["rewrapped_version"] != "3" || acme.CustomMetadata["rotated_at"] == "" {
		t.Errorf("acme's custom metadata after the rewrap: %v; want rewrapped_version 3 and rotated_at", acme.CustomMetadata)
	}

	// The CronJob's token may note custom metadata, and nothing else of a
	// set's metadata: no max_versions that would trim the history.
	maint, err := root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	login, err := maint.Logical().Write("auth/kubernetes/login", map[string]any{"role": "credlet-key-maintenance", "jwt": jwt})
	if err != nil {
		t.Fatal(err)
	}
	maint.SetToken(login.Auth.ClientToken)
	for _, body := range []map[string]any{{"max_versions": 1}, {"delete_version_after": "1s"}, {"custom_metadata": map[string]any{"a": "b"}, "max_versions": 1}} {
		if _, err := maint.Logical().Write("secret/metadata/partners/acme/zerodha", body); err == nil {
			t.Errorf("the key-maintenance token could write %v to acme's metadata", body)
		}
	}
}

// checkKeyRotation: setup.sh created the Transit key with auto-rotation at
// 30 days; on an existing key it turns auto-rotation back on (or brings a
// longer period down) and keeps a shorter one; a period over 30 days is
// refused with one line.
func checkKeyRotation(t *testing.T, ctx context.Context, vc *api.Client, env []string) {
	t.Helper()
	const key = "transit/keys/credlet-partners"
	period := func() int64 {
		t.Helper()
		s, err := vc.Logical().Read(key)
		if err != nil || s == nil {
			t.Fatalf("read %s: %v", key, err)
		}
		n, err := s.Data["auto_rotate_period"].(json.Number).Int64()
		if err != nil {
			t.Fatalf("auto_rotate_period %v: %v", s.Data["auto_rotate_period"], err)
		}
		return n
	}
	run := func(extra ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "manifests/vault/setup.sh"))
		cmd.Env = append(append([]string{}, env...), extra...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	setPeriod := func(p string) {
		t.Helper()
		if _, err := vc.Logical().Write(key+"/config", map[string]any{"auto_rotate_period": p}); err != nil {
			t.Fatal(err)
		}
	}
	if got := period(); got != 30*24*3600 {
		t.Fatalf("auto_rotate_period after setup.sh = %ds; want %ds (30 days)", got, 30*24*3600)
	}
	for _, tc := range []struct {
		name  string
		set   string
		want  int64
		wants string
	}{
		{"auto-rotation turned off", "0", 30 * 24 * 3600, "set auto_rotate_period=720h"},
		{"longer than 30 days", "1000h", 30 * 24 * 3600, "set auto_rotate_period=720h"},
		{"an operator's shorter period is kept", "168h", 168 * 3600, "rotates every 604800s already"},
	} {
		setPeriod(tc.set)
		out, err := run()
		if err != nil || !strings.Contains(out, tc.wants) {
			t.Fatalf("%s: setup.sh: %v\n%s", tc.name, err, out)
		}
		if got := period(); got != tc.want {
			t.Errorf("%s: auto_rotate_period = %ds; want %ds", tc.name, got, tc.want)
		}
	}
	setPeriod("720h")
	out, err := run("TRANSIT_ROTATE_PERIOD=721h")
	if err == nil || !strings.Contains(out, `TRANSIT_ROTATE_PERIOD "721h": allowed whole hours from 1h to 720h`) {
		t.Fatalf("TRANSIT_ROTATE_PERIOD=721h: %v %s", err, out)
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("a bad TRANSIT_ROTATE_PERIOD printed more than one line:\n%s", out)
	}
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
