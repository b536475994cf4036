package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// JWTAudience is the audience every jwt auth role created by CreateJWTRole
// requires, the one credlet's projected tokens carry.
const JWTAudience = KubernetesAudience

// Claims of a Kubernetes service-account token, as JSON pointers, and the
// alias metadata keys CreateJWTRole maps them to. The keys are the ones
// Kubernetes auth sets, so a policy templated on
// identity.entity.aliases.ACCESSOR.metadata.service_account_namespace works
// for both methods.
const (
	ClaimNamespace      = "/kubernetes.io/namespace"
	ClaimServiceAccount = "/kubernetes.io/serviceaccount/name"
)

// Issuer returns the apiserver's service-account issuer (from its OIDC
// discovery document) and the PEM public keys of its JWKS, read with the
// admin credentials.
func (k *Kube) Issuer(ctx context.Context) (issuer string, keys []string, err error) {
	rc := k.Clientset.CoreV1().RESTClient()
	b, err := rc.Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("service-account issuer discovery: %w", err)
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(b, &disc); err != nil || disc.Issuer == "" {
		return "", nil, fmt.Errorf("service-account issuer discovery: no issuer in %.200q (%v)", b, err)
	}
	b, err = rc.Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("service-account jwks: %w", err)
	}
	keys, err = jwksToPEM(b)
	if err != nil {
		return "", nil, fmt.Errorf("service-account jwks: %w", err)
	}
	return disc.Issuer, keys, nil
}

// jwksToPEM converts the RSA and EC keys of a JWKS document to PEM public
// keys.
func jwksToPEM(doc []byte) ([]string, error) {
	var set struct {
		Keys []struct {
			Kty, N, E, Crv, X, Y string
		} `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, err
	}
	b64 := func(s string) (*big.Int, error) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		return new(big.Int).SetBytes(b), nil
	}
	var out []string
	for _, k := range set.Keys {
		var pub any
		switch k.Kty {
		case "RSA":
			n, err := b64(k.N)
			if err != nil {
				return nil, fmt.Errorf("rsa n: %w", err)
			}
			e, err := b64(k.E)
			if err != nil {
				return nil, fmt.Errorf("rsa e: %w", err)
			}
			pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
			curve, ok := curves[k.Crv]
			if !ok {
				return nil, fmt.Errorf("ec curve %q not supported", k.Crv)
			}
			x, errX := base64.RawURLEncoding.DecodeString(k.X)
			y, errY := base64.RawURLEncoding.DecodeString(k.Y)
			size := (curve.Params().BitSize + 7) / 8
			if errX != nil || errY != nil || len(x) > size || len(y) > size {
				return nil, fmt.Errorf("ec key: bad coordinates")
			}
			point := make([]byte, 1+2*size)
			point[0] = 4 // uncompressed
			copy(point[1+size-len(x):], x)
			copy(point[1+2*size-len(y):], y)
			ec, err := ecdsa.ParseUncompressedPublicKey(curve, point)
			if err != nil {
				return nil, fmt.Errorf("ec key: %w", err)
			}
			pub = ec
		default:
			return nil, fmt.Errorf("key type %q not supported", k.Kty)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no keys")
	}
	return out, nil
}

// ConfigureJWTAuth enables jwt auth at mount ("jwt" when empty) and has it
// verify k's service-account tokens: the issuer's public keys (read from
// the apiserver's JWKS) as jwt_validation_pubkeys and its issuer as
// bound_issuer. Vault then calls nothing at login. Calling it again for the
// same mount refreshes the configuration.
func (v *Vault) ConfigureJWTAuth(k *Kube, mount string) error {
	if mount == "" {
		mount = "jwt"
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	issuer, keys, err := k.Issuer(ctx)
	if err != nil {
		return fmt.Errorf("jwt auth: %w", err)
	}
	if err := v.enableAuth(ctx, mount, "jwt"); err != nil {
		return fmt.Errorf("jwt auth: %w", err)
	}
	_, err = v.Client().Logical().WriteWithContext(ctx, path.Join("auth", mount, "config"), map[string]any{
		"jwt_validation_pubkeys": keys,
		"bound_issuer":           issuer,
	})
	if err != nil {
		return fmt.Errorf("jwt auth: write %s/config: %w", mount, err)
	}
	return nil
}

// enableAuth enables an auth method of typ at mount unless one is there.
func (v *Vault) enableAuth(ctx context.Context, mount, typ string) error {
	c := v.Client()
	mounts, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth mounts: %w", err)
	}
	if _, ok := mounts[strings.Trim(mount, "/")+"/"]; ok {
		return nil
	}
	if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &api.EnableAuthOptions{Type: typ}); err != nil {
		return fmt.Errorf("enable %s at %s: %w", typ, mount, err)
	}
	return nil
}

// CreateJWTRole creates (or replaces) role at jwt auth mount ("jwt" when
// empty) for service-account tokens: audience JWTAudience, the
// kubernetes.io namespace claim one of namespaces and, unless saNames is
// empty, the service-account name one of saNames. The namespace and
// service-account name claims are mapped to the alias metadata keys
// service_account_namespace and service_account_name, as Kubernetes auth
// names them. Token policies and TTLs as given (zero: the mount's default).
func (v *Vault) CreateJWTRole(mount, role string, saNames, namespaces, policies []string, ttl, maxTTL time.Duration) error {
	if mount == "" {
		mount = "jwt"
	}
	bound := map[string]any{ClaimNamespace: namespaces}
	if len(saNames) > 0 {
		bound[ClaimServiceAccount] = saNames
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	_, err := v.Client().Logical().WriteWithContext(ctx, path.Join("auth", mount, "role", role), map[string]any{
		"role_type":       "jwt",
		"user_claim":      "sub",
		"bound_audiences": []string{JWTAudience},
		"bound_claims":    bound,
		"claim_mappings": map[string]string{
			ClaimNamespace:      "service_account_namespace",
			ClaimServiceAccount: "service_account_name",
		},
		"token_policies": policies,
		"token_ttl":      int(ttl.Seconds()),
		"token_max_ttl":  int(maxTTL.Seconds()),
	})
	if err != nil {
		return fmt.Errorf("create jwt role %s/%s: %w", mount, role, err)
	}
	return nil
}
