package creds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/oneline"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/kv"
	"github.com/credlet/credlet/internal/vault/transit"
)

// CLITimeout bounds each request of an operator command when
// VaultConfig.Timeout is 0.
const CLITimeout = 30 * time.Second

// CLIRetries is how often the operator CLI's client retries a request
// Vault answered with 5xx or 429 (the agent's client does not: its loops
// back off instead).
const CLIRetries = 2

// VaultConfig says how to reach Vault.
type VaultConfig struct {
	Addr      string // required
	CACert    string // PEM bundle to trust; empty: system roots
	TokenFile string // empty: VAULT_TOKEN, then ~/.vault-token
	// TransitMount is where Transit is mounted ("transit" if empty).
	TransitMount string
	Timeout      time.Duration // per request (CLITimeout if zero)
	Getenv       func(string) string
	// Login, when set, gets the token by logging in (--auth kubernetes)
	// instead of from TokenFile, VAULT_TOKEN or ~/.vault-token.
	Login *LoginConfig
}

// Vault is the KV v2 + Transit backend, on the layer the agent's sources
// use (packages vault/kv and vault/transit).
type Vault struct {
	kv      *kv.Client
	transit *transit.Client
	addr    string
	mounts  map[string]error // preflight result per mount
	revoke  bool             // the token came from a login: Close revokes it
}

// NewVault makes a client with a token from the config, VAULT_TOKEN or
// ~/.vault-token.
func NewVault(cfg VaultConfig) (*Vault, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if cfg.Addr == "" {
		return nil, usage("--vault-addr (or VAULT_ADDR) is required with --source vault")
	}
	if err := credspec.CheckVaultAddr(cfg.Addr); err != nil {
		return nil, usage("--vault-addr: " + credspec.ProblemOf(err) + "; want http(s)://HOST:PORT")
	}
	var token string
	if cfg.Login == nil {
		t, err := VaultToken(cfg.TokenFile, getenv)
		if err != nil {
			return nil, err
		}
		token = t
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = CLITimeout
	}
	c, err := vault.NewClient(vault.ClientConfig{Addr: cfg.Addr, CACertFile: cfg.CACert, Timeout: timeout, MaxRetries: CLIRetries})
	if err != nil {
		return nil, usage(fmt.Sprintf("--vault-addr %s / --vault-ca-cert: %s", cfg.Addr, vault.ConfigProblem(err)))
	}
	b := &Vault{kv: kv.New(c), transit: transit.New(c, cfg.TransitMount), addr: cfg.Addr, mounts: map[string]error{}}
	if cfg.Login != nil {
		if err := b.login(*cfg.Login, timeout); err != nil {
			return nil, err
		}
		return b, nil
	}
	c.SetToken(token)
	return b, nil
}

// VaultToken finds the operator's (or a dev agent's) Vault token: the file
// if given, else VAULT_TOKEN, else ~/.vault-token. Errors wrap ErrUsage.
func VaultToken(file string, getenv func(string) string) (string, error) {
	if file == "" {
		if t := getenv("VAULT_TOKEN"); t != "" {
			return strings.TrimSpace(t), nil
		}
		home, err := os.UserHomeDir()
		if err != nil {
			return "", usage("no Vault token: set VAULT_TOKEN, run `vault login`, or pass --vault-token-file")
		}
		file = filepath.Join(home, ".vault-token")
		if _, err := os.Stat(file); err != nil {
			return "", usage("no Vault token: set VAULT_TOKEN, run `vault login` (~/.vault-token), or pass --vault-token-file")
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usage(fmt.Sprintf("--vault-token-file: %v", err))
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", usage(fmt.Sprintf("Vault token file %s is empty", file))
	}
	return t, nil
}

// Describe names the backend.
func (b *Vault) Describe() string { return "Vault at " + b.addr }

// Close forgets the token (revoking it first when the backend logged in).
func (b *Vault) Close() {
	if b.revoke {
		b.revokeLogin()
	}
	b.kv.API.SetToken("")
}

// split validates a MOUNT/PATH and checks once per mount that it is KV v2.
func (b *Vault) split(ctx context.Context, path string) (mount, rest string, err error) {
	p, err := filesource.CleanPath(path)
	if err != nil {
		return "", "", usage(err.Error())
	}
	mount, rest, _ = strings.Cut(p, "/")
	return mount, rest, b.checkMount(ctx, mount, mount+"/data/"+rest)
}

// checkMount asks Vault what is mounted at mount/ (the request the vault
// CLI makes before a kv command). probe is an API path the command will
// use, to tell "no mount" from "no access" when Vault won't say.
func (b *Vault) checkMount(ctx context.Context, mount, probe string) error {
	if err, ok := b.mounts[mount]; ok {
		return err
	}
	err := b.preflight(ctx, mount, probe)
	if err == nil || errors.Is(err, ErrNoMount) {
		b.mounts[mount] = err
	}
	return err
}

func (b *Vault) preflight(ctx context.Context, mount, probe string) error {
	noMount := newKind(ErrNoMount, fmt.Sprintf("no KV v2 secrets engine is mounted at %s/ on %s (enable one: vault secrets enable -path=%s kv-v2)", mount, b.addr, mount))
	info, err := b.kv.Mount(ctx, mount)
	switch status := vault.StatusCode(err); {
	case status == 403:
		// Vault answers 403 both for "no such mount" and for "no access at
		// all". If the token has capabilities on the path, the mount is
		// what is missing.
		if b.hasCapabilities(ctx, probe) {
			return noMount
		}
		return nil // the real request reports the permission denial
	case status == 400 || status == 404:
		return noMount
	case err != nil:
		return b.wrap("check mount", mount+"/", err)
	}
	switch {
	case info.Type == "" || (info.Path != "" && info.Path != mount):
		return noMount
	case info.Type != "kv" && info.Type != "generic":
		return newKind(ErrNoMount, fmt.Sprintf("%s/ on %s is a %q secrets engine, not KV v2", mount, b.addr, info.Type))
	case !info.IsKV2():
		return newKind(ErrNoMount, fmt.Sprintf("%s/ on %s is KV version 1; credlet needs KV v2 (vault kv enable-versioning %s/)", mount, b.addr, mount))
	}
	return nil
}

// hasCapabilities reports whether the token may do anything on path.
func (b *Vault) hasCapabilities(ctx context.Context, path string) bool {
	caps, err := b.kv.Capabilities(ctx, path)
	return err == nil && slices.ContainsFunc(caps, func(c string) bool { return c != "deny" })
}

// wrap turns an error of the Vault layer into one line naming the request.
func (b *Vault) wrap(op, path string, err error) error {
	var re *vault.RequestError
	switch {
	case errors.Is(err, vault.ErrPermission):
		return &kindError{kind: ErrPermission, err: err, msg: fmt.Sprintf(
			"permission denied: %s %s on %s (the token is invalid or expired, or its policies do not allow it; check: vault token capabilities %s)",
			op, path, b.addr, path)}
	case errors.Is(err, vault.ErrNotFound):
		return &kindError{kind: ErrNotFound, err: err, msg: fmt.Sprintf("%s %s: not found on %s", op, path, b.addr)}
	case errors.Is(err, vault.ErrUnreachable):
		var ue *url.Error
		errors.As(err, &ue)
		return &kindError{kind: ErrUnreachable, err: err, msg: fmt.Sprintf("cannot reach Vault at %s: %v (check --vault-addr or VAULT_ADDR)", b.addr, ue.Err)}
	case errors.As(err, &re) && re.Status != 0:
		detail := re.Msg
		if detail == "" {
			detail = "no detail"
		}
		return fmt.Errorf("%s %s: Vault answered HTTP %d: %s", op, path, re.Status, detail)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// Metadata reads MOUNT/metadata/PATH.
func (b *Vault) Metadata(ctx context.Context, path string) (Metadata, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return Metadata{}, err
	}
	md, err := b.kv.Metadata(ctx, mount, rest)
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return Metadata{}, newKind(ErrNotFound, fmt.Sprintf("%s/%s does not exist on %s (creds put creates it)", mount, rest, b.addr))
	case err != nil:
		return Metadata{}, b.wrap("read", mount+"/metadata/"+rest, err)
	}
	m := Metadata{Current: md.CurrentVersion}
	for _, v := range md.Newest() {
		m.Versions = append(m.Versions, VersionInfo{Version: v.Version, CreatedAt: v.CreatedTime, DeletedAt: v.DeletionTime, Destroyed: v.Destroyed})
	}
	return m, nil
}

// Read reads MOUNT/data/PATH?version=N.
func (b *Vault) Read(ctx context.Context, path string, version int) (Secret, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return Secret{}, err
	}
	v, err := b.kv.Read(ctx, mount, rest, version)
	defer v.Wipe()
	var gone *kv.DeletedError
	switch {
	case errors.As(err, &gone):
		when := "destroyed"
		if !gone.Meta.Destroyed {
			when = "revoked at " + gone.Meta.DeletionTime.UTC().Format(time.RFC3339)
		}
		return Secret{}, newKind(ErrDeleted, fmt.Sprintf("%s/%s version %d was %s", mount, rest, gone.Meta.Version, when))
	case errors.Is(err, vault.ErrNotFound) && version > 0:
		return Secret{}, newKind(ErrNotFound, fmt.Sprintf("%s/%s has no version %d on %s", mount, rest, version, b.addr))
	case errors.Is(err, vault.ErrNotFound):
		return Secret{}, newKind(ErrNotFound, fmt.Sprintf("%s/%s does not exist on %s (creds put creates it)", mount, rest, b.addr))
	case err != nil:
		return Secret{}, b.wrap("read", mount+"/data/"+rest, err)
	}
	out := Secret{Version: v.Meta.Version, CreatedAt: v.Meta.CreatedTime, Fields: make(map[string][]byte, len(v.Data))}
	for k, raw := range v.Data {
		if len(raw) == 0 || raw[0] != '"' {
			securemem.WipeFields(out.Fields)
			return Secret{}, fmt.Errorf("%s/%s version %d: field %q is not a string", mount, rest, out.Version, k)
		}
		val, err := kv.Value(raw)
		if err != nil {
			securemem.WipeFields(out.Fields)
			return Secret{}, fmt.Errorf("%s/%s version %d: field %q: %w", mount, rest, out.Version, k, err)
		}
		out.Fields[k] = val
	}
	return out, nil
}

// Write writes MOUNT/data/PATH with check-and-set cas.
func (b *Vault) Write(ctx context.Context, path string, fields map[string][]byte, cas int) (int, error) {
	defer securemem.WipeFields(fields)
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return 0, err
	}
	for k, v := range fields {
		if !utf8.Valid(v) {
			return 0, usage(fmt.Sprintf("field %q is not UTF-8 text; KV v2 stores strings (base64-encode binary values first)", k))
		}
	}
	n, err := b.kv.Write(ctx, mount, rest, fields, cas)
	var ce *vault.CASError
	if errors.As(err, &ce) {
		return 0, &kindError{kind: ErrCASConflict, msg: ce.Error(), err: ce}
	}
	if err != nil {
		return 0, b.wrap("write", mount+"/data/"+rest, err)
	}
	return n, nil
}

// Delete soft-deletes the current version with MOUNT/delete/PATH, naming
// the version so a concurrent write is never the one deleted.
func (b *Vault) Delete(ctx context.Context, path string) (int, error) {
	m, err := b.Metadata(ctx, path)
	if err != nil {
		return 0, err
	}
	if info, ok := m.Info(m.Current); ok && info.Gone() {
		return 0, newKind(ErrDeleted, fmt.Sprintf("%s version %d is already revoked; write a new one with creds rotate", path, m.Current))
	}
	mount, rest, _ := b.split(ctx, path)
	if err := b.kv.Delete(ctx, mount, rest, m.Current); err != nil {
		return 0, b.wrap("write", mount+"/delete/"+rest, err)
	}
	return m.Current, nil
}

// List lists MOUNT/metadata/PREFIX.
func (b *Vault) List(ctx context.Context, prefix string) ([]string, error) {
	prefix = strings.Trim(prefix, "/")
	mount, rest, _ := strings.Cut(prefix, "/")
	if r, ok := strings.CutPrefix(rest, "data/"); ok {
		rest = r
	} else if rest == "data" {
		rest = ""
	}
	if mount == "" {
		return nil, usage("list needs a prefix: MOUNT or MOUNT/PATH, e.g. secret/partners")
	}
	if err := b.checkMount(ctx, mount, mount+"/metadata/"+rest); err != nil {
		return nil, err
	}
	out, err := b.kv.List(ctx, mount, rest)
	if err != nil {
		return nil, b.wrap("list", mount+"/metadata/"+rest, err)
	}
	return out, nil
}

// Encrypt encrypts every value with one batch call to TRANSIT/encrypt/KEY.
func (b *Vault) Encrypt(ctx context.Context, key, keyContext string, fields map[string][]byte) error {
	if err := b.checkTransitKey(ctx, key, keyContext); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(fields))
	plain := make([][]byte, len(names))
	for i, n := range names {
		plain[i] = fields[n]
	}
	cts, err := b.transit.Encrypt(ctx, key, keyContext, plain)
	var item *vault.BatchItemError
	switch {
	case errors.As(err, &item) && item.Index < len(names):
		return newKind(ErrTransit, fmt.Sprintf("transit encrypt of field %q with key %s: %s", names[item.Index], key, oneline.Of(item.Msg, 300)))
	case errors.Is(err, vault.ErrBadResponse):
		return &kindError{kind: ErrTransit, err: err, msg: fmt.Sprintf("transit encrypt with key %s: %v", key, err)}
	case err != nil:
		return b.wrap("write", b.transit.Path("encrypt", key), err)
	}
	securemem.WipeFields(fields)
	for i, n := range names {
		fields[n] = []byte(cts[i])
	}
	return nil
}

// checkTransitKey makes sure the key exists (encrypt would otherwise create
// it) and that --context matches whether it is derived. A token that may
// not read the key skips the check.
func (b *Vault) checkTransitKey(ctx context.Context, key, keyContext string) error {
	k, err := b.transit.Key(ctx, key)
	switch status := vault.StatusCode(err); {
	case status == 403:
		return nil
	case status == 404 || status == 400:
		return b.noTransit(key)
	case err != nil:
		return b.wrap("read", b.transit.Path("keys", key), err)
	}
	switch {
	case k.Derived && keyContext == "":
		return usage(fmt.Sprintf("transit key %s is derived: --context is required (the partner's context)", key))
	case !k.Derived && keyContext != "":
		return usage(fmt.Sprintf("transit key %s is not derived: --context does not apply (drop it, or use a key created with derived=true)", key))
	}
	return nil
}

func (b *Vault) noTransit(key string) error {
	m := b.transit.MountPath()
	return newKind(ErrTransit, fmt.Sprintf("transit key %s does not exist at %s/ on %s (create it: vault write -f %s/keys/%s derived=true)", key, m, b.addr, m, key))
}
