package auth

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/vault"
)

// Token "logs in" with a fixed token (dev only): it looks the token up so the
// lease manager learns its TTL and whether it is renewable. A token with no
// TTL (a root token) is never renewed.
func Token(token string) Method { return &fixedToken{token: token} }

type fixedToken struct{ token string }

func (t *fixedToken) Name() string { return "token" }

func (t *fixedToken) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	if t.token == "" {
		return nil, vault.Permanent(fmt.Errorf("token auth: empty token"))
	}
	lc, err := c.CloneWithHeaders()
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	lc.SetToken(t.token)
	s, err := lc.Logical().ReadWithContext(vault.WithOp(ctx, vault.OpLookup), "auth/token/lookup-self")
	if err != nil {
		return nil, vault.Wrap(vault.OpLookup, err)
	}
	if s == nil || s.Data == nil {
		return nil, ErrNoAuth
	}
	auth := &api.SecretAuth{ClientToken: t.token}
	auth.Accessor, _ = s.Data["accessor"].(string)
	auth.Renewable, _ = s.Data["renewable"].(bool)
	if n, ok := s.Data["ttl"].(json.Number); ok {
		ttl, err := n.Int64()
		if err != nil {
			return nil, fmt.Errorf("token lookup: ttl %q: %w", n, err)
		}
		auth.LeaseDuration = int(ttl)
	}
	return &api.Secret{Auth: auth}, nil
}
