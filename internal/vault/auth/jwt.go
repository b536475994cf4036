package auth

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/api"
)

// JWT logs in with Vault's jwt auth method, presenting the service-account
// token in tokenFile (a projected token with audience "vault") to role.
// Vault checks the token's signature against the keys it was configured
// with (the cluster's OIDC discovery document, a JWKS, or fixed public keys)
// and calls nothing else: unlike Kubernetes auth there is no TokenReview.
// The file is re-read at every login because the kubelet rotates it. mount
// defaults to "jwt".
//
// hashicorp/vault/api has no auth helper for jwt (there is one for
// kubernetes, approle and a few cloud methods), so this is the one login
// write: auth/MOUNT/login with role and jwt.
func JWT(role, mount, tokenFile string) Method {
	return &jwtMethod{role: role, mount: cleanMount(mount, "jwt"), tokenFile: tokenFile}
}

type jwtMethod struct {
	role, mount, tokenFile string
}

func (j *jwtMethod) Name() string { return "jwt" }

// Login returns Vault's refusal as "jwt login: login: HTTP 400: <Vault's
// reason>", permanent for a 4xx.
func (j *jwtMethod) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	tok, err := readFile("service account token", j.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("jwt login: %w", err)
	}
	defer clear(tok)
	s, err := login(ctx, c, j.mount, map[string]any{"role": j.role, "jwt": string(tok)})
	if err != nil {
		return nil, fmt.Errorf("jwt login: %w", err)
	}
	return s, nil
}
