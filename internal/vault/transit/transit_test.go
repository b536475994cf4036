package transit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/transit"
)

var tv *testenv.Vault

func TestMain(m *testing.M) { testenv.MainVault(m, &tv) }

// TestTransitRoundTrip encrypts, decrypts, rewraps and reads the key
// against a real Vault, with a derived key and a partner context.
func TestTransitRoundTrip(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	root := tv.Client()
	key := "layer-" + strings.ToLower(t.Name())
	if _, err := root.Logical().Write("transit/keys/"+key, map[string]any{"derived": true}); err != nil {
		t.Fatal(err)
	}
	c := transit.New(root, "")
	cts, err := c.Encrypt(ctx, key, "acme", [][]byte{[]byte("FAKE-secret-1"), []byte("FAKE-secret-2")})
	if err != nil || len(cts) != 2 || transit.KeyVersion(cts[0]) != 1 {
		t.Fatalf("encrypt: %q %v", cts, err)
	}
	plain, err := c.Decrypt(ctx, key, "acme", cts)
	if err != nil || string(plain[0]) != "FAKE-secret-1" || string(plain[1]) != "FAKE-secret-2" {
		t.Fatalf("decrypt: %v", err)
	}

	_, err = c.Decrypt(ctx, key, "beta", cts[1:])
	var item *vault.BatchItemError
	if !errors.As(err, &item) || !errors.Is(err, vault.ErrBatchItem) || item.Index != 0 || item.Op != vault.OpTransitDecrypt {
		t.Fatalf("decrypt under another partner's context: %v, want a BatchItemError for item 0", err)
	}
	if strings.Contains(err.Error(), "FAKE-secret") {
		t.Fatal("error shows a plaintext")
	}

	if _, err := root.Logical().Write("transit/keys/"+key+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	rewrapped, err := c.Rewrap(ctx, key, "acme", cts)
	if err != nil || transit.KeyVersion(rewrapped[0]) != 2 || transit.KeyVersion(rewrapped[1]) != 2 {
		t.Fatalf("rewrap: %q %v", rewrapped, err)
	}
	if plain, err := c.Decrypt(ctx, key, "acme", rewrapped); err != nil || string(plain[1]) != "FAKE-secret-2" {
		t.Fatalf("decrypt after rewrap: %v", err)
	}

	k, err := c.Key(ctx, key)
	if err != nil || !k.Derived || k.LatestVersion != 2 || len(k.Versions) != 2 || k.Versions[2].Before(k.Versions[1]) {
		t.Fatalf("key: %+v %v", k, err)
	}
	if _, err := c.Key(ctx, "layer-missing"); vault.StatusCode(err) == 0 || err == nil {
		t.Fatalf("missing key: %v, want Vault's refusal", err)
	}
}

func TestKeyVersion(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"vault:v1:abc", 1},
		{"vault:v12:abc", 12},
		{"vault:v:abc", 0},
		{"vault:v1", 0},
		{"vault:vx:abc", 0},
		{"FAKE-plain", 0},
	}
	for _, tt := range tests {
		if got := transit.KeyVersion(tt.in); got != tt.want {
			t.Errorf("KeyVersion(%q) = %d, want %d", tt.in, got, tt.want)
		}
		if got := transit.IsCiphertext([]byte(tt.in)); got != (tt.want > 0) {
			t.Errorf("IsCiphertext(%q) = %t", tt.in, got)
		}
	}
}

// TestBatchParseError: a 2xx answer whose batch does not parse is reported
// as ErrBadResponse with the parse error, not as a count mismatch. Real
// Vault never sends one, so an httptest server plays it.
func TestBatchParseError(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"plaintext not base64", `{"data":{"batch_results":[{"plaintext":"!!!"}]}}`, "illegal base64"},
		{"not JSON", `<html>`, "invalid character"},
		{"too few results", `{"data":{"batch_results":[]}}`, "0 results for 1 items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := api.NewClient(&api.Config{Address: srv.URL, HttpClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			c.SetToken("FAKE-token")
			_, err = transit.New(c, "").Decrypt(context.Background(), "k", "", []string{"vault:v1:FAKE"})
			if !errors.Is(err, vault.ErrBadResponse) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadResponse naming %q", err, tt.want)
			}
		})
	}
}
