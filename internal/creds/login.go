package creds

import (
	"context"
	"fmt"
	"time"

	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
)

// LoginConfig is how an operator command logs in instead of using a token
// it is given: Kubernetes auth with a projected service-account token, for
// jobs in a cluster (the key-maintenance CronJob).
type LoginConfig struct {
	Method    string // "kubernetes"
	Role      string // the Vault role
	Mount     string // the auth mount ("kubernetes" if empty)
	TokenFile string // the service-account token (audience "vault")
}

// DefaultSATokenFile is where the key-maintenance CronJob mounts its
// projected service-account token, as the agent's --token-file default.
const DefaultSATokenFile = "/var/run/secrets/credlet/token"

// CheckLogin validates the --auth flags: "" or "token" means no login.
func CheckLogin(method, role, mount, tokenFile string) (*LoginConfig, error) {
	switch method {
	case "", "token":
		if role != "" {
			return nil, usage("--role applies to --auth kubernetes")
		}
		return nil, nil
	case "kubernetes":
		if role == "" {
			return nil, usage("--auth kubernetes needs --role (the Vault Kubernetes auth role, e.g. credlet-key-maintenance)")
		}
		if tokenFile == "" {
			tokenFile = DefaultSATokenFile
		}
		return &LoginConfig{Method: method, Role: role, Mount: mount, TokenFile: tokenFile}, nil
	}
	return nil, usage(fmt.Sprintf("--auth %q: allowed token (VAULT_TOKEN, ~/.vault-token or --vault-token-file) or kubernetes", method))
}

// login logs in with Kubernetes auth and uses the token it gets.
func (b *Vault) login(lc LoginConfig, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := auth.Kubernetes(lc.Role, lc.Mount, lc.TokenFile).Login(ctx, b.kv.API)
	if err != nil {
		return b.wrapLogin(lc, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return fmt.Errorf("vault login with role %s: %w", lc.Role, auth.ErrNoAuth)
	}
	b.kv.API.SetToken(s.Auth.ClientToken)
	b.revoke = true
	return nil
}

func (b *Vault) wrapLogin(lc LoginConfig, err error) error {
	mount := lc.Mount
	if mount == "" {
		mount = "kubernetes"
	}
	if vault.StatusCode(err) == 0 && !vault.IsPermanent(err) {
		return b.wrap("login", "auth/"+mount+"/login", err)
	}
	return &kindError{kind: ErrPermission, err: err, msg: fmt.Sprintf("vault login at auth/%s with role %s on %s failed: %s (check the role's bound service account and namespace, and that the token file %s holds a token with audience vault)",
		mount, lc.Role, b.addr, oneLineErr(err), lc.TokenFile)}
}

// revokeLogin revokes the token a login got, so a finished job leaves no
// live token behind.
func (b *Vault) revokeLogin() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.kv.API.Auth().Token().RevokeSelfWithContext(ctx, "")
	b.revoke = false
}
