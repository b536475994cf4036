package creds

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/testenv"
)

func TestVaultMountErrors(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	root := vlt.Client()
	if err := root.Sys().Mount("kv1-"+strings.ToLower(t.Name()), &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	b := vaultWithToken(t, vlt.RootToken)
	kv1 := "kv1-" + strings.ToLower(t.Name())
	tests := []struct {
		name string
		op   func() error
		kind error
		msg  string
	}{
		{"put to missing mount", func() error {
			_, err := Put(ctx, b, "nomount/acme/x", vals("k", "FAKE"), WriteOptions{})
			return err
		}, ErrNoMount, "no KV v2 secrets engine is mounted at nomount/"},
		{"history on missing mount", func() error { _, err := b.Metadata(ctx, "nomount/acme/x"); return err }, ErrNoMount, "vault secrets enable -path=nomount kv-v2"},
		{"list missing mount", func() error { _, err := b.List(ctx, "nomount"); return err }, ErrNoMount, "nomount/"},
		{"transit is not kv", func() error { _, err := b.Metadata(ctx, "transit/acme/x"); return err }, ErrNoMount, `is a "transit" secrets engine`},
		{"kv version 1", func() error {
			_, err := Put(ctx, b, kv1+"/x", vals("k", "FAKE"), WriteOptions{})
			return err
		}, ErrNoMount, "is KV version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantKind(t, tt.op(), tt.kind, tt.msg) })
	}
}

func TestVaultPermissionDenied(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	pre := testPrefix(t)
	root := vaultWithToken(t, vlt.RootToken)
	if _, err := Put(ctx, root, pre+"/acme/x", vals("k", "FAKE-1"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A partner operator that may only read its own prefix.
	policy := fmt.Sprintf(`
path "%[1]s/data/%[2]s/acme/*" { capabilities = ["read"] }
path "%[1]s/metadata/%[2]s/acme/*" { capabilities = ["read", "list"] }
`, "secret", strings.TrimPrefix(pre, "secret/"))
	if err := vlt.WritePolicy("readonly-"+strings.ToLower(t.Name()), policy); err != nil {
		t.Fatal(err)
	}
	tok, err := vlt.Client().Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"readonly-" + strings.ToLower(t.Name())}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	ro := vaultWithToken(t, tok.Auth.ClientToken)
	if got := mustRead(t, ro, pre+"/acme/x", 0); got["k"] != "FAKE-1" {
		t.Fatalf("read with the partner token: %v", got)
	}
	_, err = Rotate(ctx, ro, pre+"/acme/x", vals("k", "FAKE-2"), WriteOptions{})
	wantKind(t, err, ErrPermission, "permission denied: write secret/data/"+strings.TrimPrefix(pre, "secret/")+"/acme/x")
	_, err = ro.Metadata(ctx, pre+"/beta/x")
	wantKind(t, err, ErrPermission, "vault token capabilities secret/metadata/")

	bad := vaultWithToken(t, "FAKE-not-a-token")
	_, err = bad.Metadata(ctx, pre+"/acme/x")
	wantKind(t, err, ErrPermission, "invalid or expired")
	if strings.Contains(err.Error(), "FAKE-not-a-token") {
		t.Fatal("error shows the token")
	}
}

func TestVaultUnreachable(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewVault(VaultConfig{Addr: fmt.Sprintf("http://127.0.0.1:%d", port), Getenv: func(string) string { return "FAKE-token" }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Metadata(context.Background(), "secret/x/y")
	wantKind(t, err, ErrUnreachable, "cannot reach Vault at http://127.0.0.1:")
}

// TestVaultTransit: put encrypts with a derived key under the partner's
// context; KV holds only ciphertext that decrypts under that context alone.
func TestVaultTransit(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	pre := testPrefix(t)
	root := vlt.Client()
	key := "partners-" + strings.ToLower(t.Name())
	if _, err := root.Logical().Write("transit/keys/"+key, map[string]any{"derived": true}); err != nil {
		t.Fatal(err)
	}
	plainKey := "plain-" + strings.ToLower(t.Name())
	if _, err := root.Logical().Write("transit/keys/"+plainKey, nil); err != nil {
		t.Fatal(err)
	}
	b := vaultWithToken(t, vlt.RootToken)
	p := pre + "/acme/zerodha"

	res, err := Put(ctx, b, p, vals("api_key", "FAKE-key-1", "api_secret", "FAKE-secret-1"),
		WriteOptions{TransitKey: key, Context: "acme", TransitFields: []string{"api_secret"}})
	if err != nil || strings.Join(res.Encrypted, ",") != "api_secret" {
		t.Fatalf("put: %+v %v", res, err)
	}
	stored := mustRead(t, b, p, 0)
	if stored["api_key"] != "FAKE-key-1" || !strings.HasPrefix(stored["api_secret"], "vault:v1:") {
		t.Fatalf("stored: api_key plain=%t, api_secret=%.9s", stored["api_key"] == "FAKE-key-1", stored["api_secret"])
	}
	decrypt := func(partner string) (string, error) {
		s, err := root.Logical().Write("transit/decrypt/"+key, map[string]any{
			"ciphertext": stored["api_secret"], "context": base64.StdEncoding.EncodeToString([]byte(partner)),
		})
		if err != nil {
			return "", err
		}
		pt, _ := base64.StdEncoding.DecodeString(s.Data["plaintext"].(string))
		return string(pt), nil
	}
	if got, err := decrypt("acme"); err != nil || got != "FAKE-secret-1" {
		t.Fatalf("decrypt under acme: %v", err)
	}
	if got, err := decrypt("beta"); err == nil && got == "FAKE-secret-1" {
		t.Fatal("another partner's context decrypts acme's ciphertext")
	}

	// Rotating an encrypted field without --transit would store plaintext.
	_, err = Rotate(ctx, b, p, vals("api_secret", "FAKE-secret-2"), WriteOptions{})
	wantKind(t, err, ErrUsage, `field "api_secret" holds Transit ciphertext in version 1`)
	res, err = Rotate(ctx, b, p, vals("api_secret", "FAKE-secret-2"), WriteOptions{TransitKey: key, Context: "acme"})
	if err != nil || res.To != 2 || strings.Join(res.Kept, ",") != "api_key" {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	stored = mustRead(t, b, p, 0)
	if got, err := decrypt("acme"); err != nil || got != "FAKE-secret-2" {
		t.Fatalf("after rotate: %v", err)
	}

	tests := []struct {
		name string
		o    WriteOptions
		kind error
		msg  string
	}{
		{"derived key without context", WriteOptions{TransitKey: key}, ErrUsage, "is derived: --context is required"},
		{"plain key with context", WriteOptions{TransitKey: plainKey, Context: "acme"}, ErrUsage, "is not derived"},
		{"missing key", WriteOptions{TransitKey: "nokey", Context: "acme"}, ErrTransit, "transit key nokey does not exist at transit/"},
		{"context without key", WriteOptions{Context: "acme"}, ErrUsage, "--context needs --transit"},
		{"transit-fields not given", WriteOptions{TransitKey: key, Context: "acme", TransitFields: []string{"other"}}, ErrUsage, `--transit-fields names "other"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Put(ctx, b, pre+"/acme/new-"+strings.ReplaceAll(tt.name, " ", "-"), vals("api_secret", "FAKE"), tt.o)
			wantKind(t, err, tt.kind, tt.msg)
		})
	}
	// No key was created by the failed attempt.
	if s, _ := root.Logical().Read("transit/keys/nokey"); s != nil {
		t.Fatal("encrypt created the missing key")
	}
}
