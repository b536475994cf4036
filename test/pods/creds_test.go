package pods

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/credlet/credlet/internal/creds"
)

// TransitKey is the derived Transit key manifests/vault/setup.sh creates.
const transitKey = "credlet-partners"

var (
	credsOnce    sync.Once
	credsBackend *creds.Vault
	credsErr     error
)

func backend(t *testing.T) *creds.Vault {
	t.Helper()
	credsOnce.Do(func() {
		credsBackend, credsErr = creds.NewVault(creds.VaultConfig{Addr: cl.Vault.Addr, Getenv: func(k string) string {
			if k == "VAULT_TOKEN" {
				return cl.Vault.RootToken
			}
			return ""
		}})
	})
	if credsErr != nil {
		t.Fatal(credsErr)
	}
	return credsBackend
}

// partnerPath is the KV path of set name for partner (namespace) ns, the
// prefix its Vault policy allows.
func partnerPath(ns, name string) string { return fmt.Sprintf("secret/partners/%s/%s", ns, name) }

// putCreds writes fields (FAKE values) to partnerPath(ns, name), encrypted
// with Transit under context ns, as `credlet-agent creds put` does.
func putCreds(t *testing.T, ctx context.Context, ns, name string, fields map[string]string) int {
	t.Helper()
	b := backend(t)
	f := map[string][]byte{}
	for k, v := range fields {
		if !strings.HasPrefix(v, "FAKE-") {
			t.Fatalf("test credential %s=%q: test values start with FAKE-", k, v)
		}
		f[k] = []byte(v)
	}
	r, err := creds.Put(ctx, b, partnerPath(ns, name), f, creds.WriteOptions{TransitKey: transitKey, Context: ns})
	if err != nil {
		t.Fatalf("creds put %s: %v", partnerPath(ns, name), err)
	}
	return r.To
}

// rotateCreds writes a new version of fields on top of the current one.
func rotateCreds(t *testing.T, ctx context.Context, ns, name string, fields map[string]string) int {
	t.Helper()
	f := map[string][]byte{}
	for k, v := range fields {
		f[k] = []byte(v)
	}
	r, err := creds.Rotate(ctx, backend(t), partnerPath(ns, name), f, creds.WriteOptions{TransitKey: transitKey, Context: ns})
	if err != nil {
		t.Fatalf("creds rotate %s: %v", partnerPath(ns, name), err)
	}
	return r.To
}
