package auth

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/api"
)

// Kubernetes logs in with the service-account token in tokenFile (a
// projected token with audience "vault"), re-read at every login because
// the kubelet rotates it. Vault checks the token with a TokenReview against
// the apiserver. mount defaults to "kubernetes".
func Kubernetes(role, mount, tokenFile string) Method {
	return &projectedToken{name: "kubernetes", role: role, mount: cleanMount(mount, "kubernetes"), tokenFile: tokenFile}
}

// JWT logs in with Vault's jwt auth method, presenting the same projected
// token to role. Vault checks its signature against the keys it was
// configured with (the cluster's OIDC discovery document, a JWKS, or fixed
// public keys) and calls nothing else: no TokenReview. mount defaults to
// "jwt". hashicorp/vault/api has no auth helper for jwt, and the kubernetes
// one would only wrap the same write, so both are this one login call.
func JWT(role, mount, tokenFile string) Method {
	return &projectedToken{name: "jwt", role: role, mount: cleanMount(mount, "jwt"), tokenFile: tokenFile}
}

// projectedToken is a login that writes auth/MOUNT/login with role and the
// token file's contents as jwt: Vault's kubernetes and jwt methods alike.
type projectedToken struct {
	name, role, mount, tokenFile string
}

func (p *projectedToken) Name() string { return p.name }

// Login names the method in its error, as in "jwt login: login: HTTP 400:
// <Vault's reason>"; a 4xx is permanent.
func (p *projectedToken) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	tok, err := readFile("service account token", p.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("%s login: %w", p.name, err)
	}
	defer clear(tok)
	s, err := login(ctx, c, p.mount, map[string]any{"role": p.role, "jwt": string(tok)})
	if err != nil {
		return nil, fmt.Errorf("%s login: %w", p.name, err)
	}
	return s, nil
}
