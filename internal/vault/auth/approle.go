package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"regexp"
	"sync"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/vault"
)

// AppRole logs in with the role_id in roleIDFile and the secret_id in
// secretIDFile, both re-read at every login. With wrapped, secretIDFile holds
// a response-wrapping token: its creation path is checked (it must come from
// auth/MOUNT/role/NAME/secret-id), it is unwrapped once, and the secret_id is
// kept in memory for later logins while the file holds the same token. An
// unwrap that fails because the token was already used or expired is
// ErrWrappingToken: permanent and a sign of possible tampering. A new token
// written to the file is unwrapped at the next login. mount defaults to
// "approle".
func AppRole(mount, roleIDFile, secretIDFile string, wrapped bool) Method {
	m := cleanMount(mount, "approle")
	return &appRole{mount: m, roleIDFile: roleIDFile, secretIDFile: secretIDFile, wrapped: wrapped,
		creationPath: regexp.MustCompile(`^auth/` + regexp.QuoteMeta(m) + `/role/[^/]+/(custom-)?secret-id$`)}
}

type appRole struct {
	mount, roleIDFile, secretIDFile string
	wrapped                         bool
	creationPath                    *regexp.Regexp

	mu       sync.Mutex
	wrapSum  [sha256.Size]byte // hash of the wrapping token the cached secret_id came from
	secretID []byte            // unwrapped secret_id; nil until the first unwrap
}

func (a *appRole) Name() string { return "approle" }

func (a *appRole) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	roleID, err := readFile("role_id", a.roleIDFile)
	if err != nil {
		return nil, err
	}
	defer clear(roleID)
	var secretID []byte
	if a.wrapped {
		secretID, err = a.unwrapped(ctx, c)
	} else {
		secretID, err = readFile("secret_id", a.secretIDFile)
	}
	if err != nil {
		return nil, err
	}
	defer clear(secretID)
	return login(ctx, c, a.mount, map[string]any{"role_id": string(roleID), "secret_id": string(secretID)})
}

// unwrapped returns a copy of the secret_id, unwrapping the file's token if
// it is not the one already unwrapped.
func (a *appRole) unwrapped(ctx context.Context, c *api.Client) ([]byte, error) {
	wt, err := readFile("secret_id wrapping token", a.secretIDFile)
	if err != nil {
		return nil, err
	}
	defer clear(wt)
	sum := sha256.Sum256(wt)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.secretID != nil && sum == a.wrapSum {
		return append([]byte(nil), a.secretID...), nil
	}
	id, err := a.unwrap(ctx, c, string(wt))
	if err != nil {
		return nil, err
	}
	clear(a.secretID)
	a.secretID, a.wrapSum = id, sum
	return append([]byte(nil), id...), nil
}

// unwrap checks where the wrapping token came from, then unwraps it.
func (a *appRole) unwrap(ctx context.Context, c *api.Client, wt string) ([]byte, error) {
	lc, err := anonymous(c)
	if err != nil {
		return nil, err
	}
	info, err := lc.Logical().WriteWithContext(vault.WithOp(ctx, vault.OpWrappingLookup), "sys/wrapping/lookup",
		map[string]any{"token": wt})
	if err != nil {
		return nil, wrapErr(vault.OpWrappingLookup, err)
	}
	if info == nil || info.Data == nil {
		return nil, vault.Permanent(fmt.Errorf("%w: lookup returned nothing", ErrWrappingToken))
	}
	if p, _ := info.Data["creation_path"].(string); !a.creationPath.MatchString(p) {
		return nil, vault.Permanent(fmt.Errorf("%w: created by %q, want auth/%s/role/NAME/secret-id", ErrWrappingToken, p, a.mount))
	}
	lc.SetToken(wt)
	s, err := lc.Logical().WriteWithContext(vault.WithOp(ctx, vault.OpUnwrap), "sys/wrapping/unwrap", nil)
	if err != nil {
		return nil, wrapErr(vault.OpUnwrap, err)
	}
	var id string
	if s != nil {
		id, _ = s.Data["secret_id"].(string)
	}
	if id == "" {
		return nil, vault.Permanent(fmt.Errorf("%w: unwrapped response holds no secret_id", ErrWrappingToken))
	}
	return []byte(id), nil
}

// wrapErr maps Vault refusing a wrapping token to ErrWrappingToken.
func wrapErr(op string, err error) error {
	err = vault.Wrap(op, err)
	switch vault.StatusCode(err) {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound:
		return vault.Permanent(fmt.Errorf("%w: %w", ErrWrappingToken, err))
	}
	return err
}
