package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/vault"
)

// Method logs in to Vault.
type Method interface {
	// Name is the method's name in metrics and logs: "kubernetes",
	// "jwt", "approle" or "token".
	Name() string
	// Login returns a secret whose Auth holds the new token. It does not
	// set the token on c.
	Login(ctx context.Context, c *api.Client) (*api.Secret, error)
}

// Sentinel errors.
var (
	// ErrNoAuth: Vault answered a login without auth information.
	ErrNoAuth = errors.New("vault login returned no token")
	// ErrWrappingToken: the response-wrapping token holding the secret_id
	// was already unwrapped, expired, or was not made for this AppRole
	// mount. Someone else may hold the secret_id: possible tampering.
	ErrWrappingToken = errors.New("secret_id wrapping token already unwrapped, expired or not for this role: possible tampering")
)

// IsPermanent reports whether a login error will not go away by retrying
// soon (bad role, denied JWT, missing file, used wrapping token) as opposed
// to a transient one (network, 5xx, 429, sealed, standby).
func IsPermanent(err error) bool { return vault.IsPermanent(err) }

// maxFileSize bounds the credential files the methods read.
const maxFileSize = 64 << 10

// readFile reads a small credential file and trims surrounding white space.
// Errors are permanent: the path or its contents are misconfigured.
func readFile(what, path string) ([]byte, error) {
	if path == "" {
		return nil, vault.Permanent(fmt.Errorf("%s file not configured", what))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, vault.Permanent(fmt.Errorf("%s file: %w", what, err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, vault.Permanent(fmt.Errorf("%s file %s: %w", what, path, err))
	}
	if len(b) > maxFileSize {
		return nil, vault.Permanent(fmt.Errorf("%s file %s: larger than %d bytes", what, path, maxFileSize))
	}
	t := bytes.TrimSpace(b)
	if len(t) == 0 {
		return nil, vault.Permanent(fmt.Errorf("%s file %s is empty", what, path))
	}
	out := append([]byte(nil), t...)
	clear(b)
	return out, nil
}

// anonymous returns a copy of c without a token, for login requests.
func anonymous(c *api.Client) (*api.Client, error) {
	lc, err := c.CloneWithHeaders()
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	lc.ClearToken()
	return lc, nil
}

// login writes data to auth/MOUNT/login without a token.
func login(ctx context.Context, c *api.Client, mount string, data map[string]any) (*api.Secret, error) {
	lc, err := anonymous(c)
	if err != nil {
		return nil, err
	}
	s, err := lc.Logical().WriteWithContext(vault.WithOp(ctx, vault.OpLogin), "auth/"+mount+"/login", data)
	if err != nil {
		return nil, vault.Wrap(vault.OpLogin, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, ErrNoAuth
	}
	return s, nil
}

func cleanMount(mount, def string) string {
	m := strings.Trim(mount, "/")
	if m == "" {
		return def
	}
	return m
}
