package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
)

// TestJWKSToPEM converts an RSA and an EC key written as a JWKS back to the
// same public keys.
func TestJWKSToPEM(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	point, err := ek.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`{"keys":[{"kty":"RSA","n":%q,"e":%q},{"kty":"EC","crv":"P-256","x":%q,"y":%q}]}`,
		b64(rk.N.Bytes()), b64(big.NewInt(int64(rk.E)).Bytes()), b64(point[1:33]), b64(point[33:]))
	pems, err := jwksToPEM([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(pems) != 2 {
		t.Fatalf("%d keys, want 2", len(pems))
	}
	for i, want := range []any{&rk.PublicKey, &ek.PublicKey} {
		block, _ := pem.Decode([]byte(pems[i]))
		if block == nil || block.Type != "PUBLIC KEY" {
			t.Fatalf("key %d: no PUBLIC KEY block", i)
		}
		got, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Errorf("key %d differs from the original", i)
		}
	}
	for _, bad := range []string{`{"keys":[]}`, `{"keys":[{"kty":"oct"}]}`, `{"keys":[{"kty":"EC","crv":"P-192"}]}`, `not json`} {
		if _, err := jwksToPEM([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
