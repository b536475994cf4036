package creds

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/filesource"
)

// VaultConfig says how to reach Vault.
type VaultConfig struct {
	Addr      string // required
	CACert    string // PEM bundle to trust; empty: system roots
	TokenFile string // empty: VAULT_TOKEN, then ~/.vault-token
	// TransitMount is where Transit is mounted ("transit" if empty).
	TransitMount string
	Timeout      time.Duration // per request (30 s if zero)
	Getenv       func(string) string
}

// Vault is the KV v2 + Transit backend.
type Vault struct {
	c       *api.Client
	addr    string
	transit string
	mounts  map[string]error // preflight result per mount
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
	if u, err := url.Parse(cfg.Addr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usage(fmt.Sprintf("--vault-addr %q: want http(s)://HOST:PORT", cfg.Addr))
	}
	token, err := VaultToken(cfg.TokenFile, getenv)
	if err != nil {
		return nil, err
	}
	ac := api.DefaultConfig()
	ac.Address = cfg.Addr
	ac.Timeout = cfg.Timeout
	if ac.Timeout == 0 {
		ac.Timeout = 30 * time.Second
	}
	ac.MaxRetries = 2
	if cfg.CACert != "" {
		if err := ac.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, usage(fmt.Sprintf("--vault-ca-cert %s: %v", cfg.CACert, err))
		}
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, usage(fmt.Sprintf("vault client: %v", err))
	}
	c.SetToken(token)
	transit := cfg.TransitMount
	if transit == "" {
		transit = "transit"
	}
	return &Vault{c: c, addr: cfg.Addr, transit: strings.Trim(transit, "/"), mounts: map[string]error{}}, nil
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

// Close ends the client's idle connections.
func (b *Vault) Close() { b.c.SetToken("") }

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
	s, err := b.c.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+mount)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) {
			switch re.StatusCode {
			case 403:
				// Vault answers 403 both for "no such mount" and for "no
				// access at all". If the token has capabilities on the
				// path, the mount is what is missing.
				if b.hasCapabilities(ctx, probe) {
					return noMount
				}
				return nil // the real request reports the permission denial
			case 400, 404:
				return noMount
			}
		}
		return b.wrap("check mount", mount+"/", err)
	}
	if s == nil || s.Data == nil {
		return noMount
	}
	typ, _ := s.Data["type"].(string)
	mpath, _ := s.Data["path"].(string)
	if mpath != "" && strings.Trim(mpath, "/") != mount {
		return noMount
	}
	var version string
	if opts, ok := s.Data["options"].(map[string]any); ok {
		version, _ = opts["version"].(string)
	}
	switch {
	case typ != "kv" && typ != "generic":
		return newKind(ErrNoMount, fmt.Sprintf("%s/ on %s is a %q secrets engine, not KV v2", mount, b.addr, typ))
	case version != "2":
		return newKind(ErrNoMount, fmt.Sprintf("%s/ on %s is KV version 1; credlet needs KV v2 (vault kv enable-versioning %s/)", mount, b.addr, mount))
	}
	return nil
}

// hasCapabilities reports whether the token may do anything on path
// (sys/capabilities-self, which the default policy allows).
func (b *Vault) hasCapabilities(ctx context.Context, path string) bool {
	s, err := b.c.Logical().WriteWithContext(ctx, "sys/capabilities-self", map[string]any{"paths": []string{path}})
	if err != nil || s == nil || s.Data == nil {
		return false
	}
	caps, _ := s.Data["capabilities"].([]any)
	for _, c := range caps {
		if c != "deny" {
			return true
		}
	}
	return false
}

// wrap turns a Vault client error into one line naming the request.
func (b *Vault) wrap(op, path string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		detail := oneLine(re.Errors)
		switch re.StatusCode {
		case 403:
			return &kindError{kind: ErrPermission, err: err, msg: fmt.Sprintf(
				"permission denied: %s %s on %s (the token is invalid or expired, or its policies do not allow it; check: vault token capabilities %s)",
				op, path, b.addr, path)}
		case 404:
			return &kindError{kind: ErrNotFound, err: err, msg: fmt.Sprintf("%s %s: not found on %s", op, path, b.addr)}
		}
		return fmt.Errorf("%s %s: Vault answered HTTP %d: %s", op, path, re.StatusCode, detail)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &kindError{kind: ErrUnreachable, err: err, msg: fmt.Sprintf("cannot reach Vault at %s: %v (check --vault-addr or VAULT_ADDR)", b.addr, ue.Err)}
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

func oneLine(errs []string) string {
	s := strings.Join(errs, "; ")
	s = strings.NewReplacer("\n", " ", "\t", " ", "* ", "").Replace(s)
	s = strings.Join(strings.Fields(s), " ")
	s = strings.TrimPrefix(s, "1 error occurred: ")
	if s == "" {
		s = "no detail"
	}
	return s
}

// Metadata reads MOUNT/metadata/PATH.
func (b *Vault) Metadata(ctx context.Context, path string) (Metadata, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return Metadata{}, err
	}
	ep := mount + "/metadata/" + rest
	s, err := b.c.Logical().ReadWithContext(ctx, ep)
	if err != nil {
		return Metadata{}, b.wrap("read", ep, err)
	}
	if s == nil || s.Data == nil {
		return Metadata{}, newKind(ErrNotFound, fmt.Sprintf("%s/%s does not exist on %s (creds put creates it)", mount, rest, b.addr))
	}
	var m Metadata
	m.Current = intOf(s.Data["current_version"])
	vs, _ := s.Data["versions"].(map[string]any)
	for k, raw := range vs {
		n, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		v, _ := raw.(map[string]any)
		m.Versions = append(m.Versions, VersionInfo{
			Version: n, CreatedAt: timeOf(v["created_time"]), DeletedAt: timeOf(v["deletion_time"]), Destroyed: v["destroyed"] == true,
		})
	}
	slices.SortFunc(m.Versions, func(a, b VersionInfo) int { return b.Version - a.Version })
	return m, nil
}

// Read reads MOUNT/data/PATH?version=N.
func (b *Vault) Read(ctx context.Context, path string, version int) (Secret, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return Secret{}, err
	}
	ep := mount + "/data/" + rest
	var q map[string][]string
	if version > 0 {
		q = map[string][]string{"version": {strconv.Itoa(version)}}
	}
	s, err := b.c.Logical().ReadWithDataWithContext(ctx, ep, q)
	if err != nil {
		return Secret{}, b.wrap("read", ep, err)
	}
	if s == nil || s.Data == nil {
		if version > 0 {
			return Secret{}, newKind(ErrNotFound, fmt.Sprintf("%s/%s has no version %d on %s", mount, rest, version, b.addr))
		}
		return Secret{}, newKind(ErrNotFound, fmt.Sprintf("%s/%s does not exist on %s (creds put creates it)", mount, rest, b.addr))
	}
	meta, _ := s.Data["metadata"].(map[string]any)
	out := Secret{Version: intOf(meta["version"]), CreatedAt: timeOf(meta["created_time"])}
	data, _ := s.Data["data"].(map[string]any)
	if data == nil {
		when := "destroyed"
		if t := timeOf(meta["deletion_time"]); !t.IsZero() {
			when = "revoked at " + t.UTC().Format(time.RFC3339)
		}
		return Secret{}, newKind(ErrDeleted, fmt.Sprintf("%s/%s version %d was %s", mount, rest, out.Version, when))
	}
	out.Fields = make(map[string][]byte, len(data))
	for k, v := range data {
		str, ok := v.(string)
		if !ok {
			wipe(out.Fields)
			return Secret{}, fmt.Errorf("%s/%s version %d: field %q is a %T, not a string", mount, rest, out.Version, k, v)
		}
		out.Fields[k] = []byte(str)
	}
	return out, nil
}

// Write writes MOUNT/data/PATH with options.cas.
func (b *Vault) Write(ctx context.Context, path string, fields map[string][]byte, cas int) (int, error) {
	defer wipe(fields)
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return 0, err
	}
	data := make(map[string]any, len(fields))
	for k, v := range fields {
		if !utf8.Valid(v) {
			return 0, usage(fmt.Sprintf("field %q is not UTF-8 text; KV v2 stores strings (base64-encode binary values first)", k))
		}
		data[k] = string(v)
	}
	ep := mount + "/data/" + rest
	s, err := b.c.Logical().WriteWithContext(ctx, ep, map[string]any{"data": data, "options": map[string]any{"cas": cas}})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == 400 {
			if m, merr := b.Metadata(ctx, path); (merr == nil && m.Current != cas) || (errors.Is(merr, ErrNotFound) && cas != 0) {
				return 0, casError(mount+"/"+rest, cas, m.Current)
			}
		}
		return 0, b.wrap("write", ep, err)
	}
	if s == nil || s.Data == nil {
		return 0, fmt.Errorf("write %s: Vault returned no version", ep)
	}
	return intOf(s.Data["version"]), nil
}

func casError(path string, want, have int) error {
	e := &filesource.CASError{Path: path, Want: want, Have: have}
	return &kindError{kind: ErrCASConflict, msg: e.Error(), err: e}
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
	ep := mount + "/delete/" + rest
	if _, err := b.c.Logical().WriteWithContext(ctx, ep, map[string]any{"versions": []int{m.Current}}); err != nil {
		return 0, b.wrap("write", ep, err)
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
	ep := mount + "/metadata/" + rest
	s, err := b.c.Logical().ListWithContext(ctx, ep)
	if err != nil {
		return nil, b.wrap("list", ep, err)
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	keys, _ := s.Data["keys"].([]any)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if str, ok := k.(string); ok {
			out = append(out, str)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Encrypt encrypts every value with one batch call to TRANSIT/encrypt/KEY.
func (b *Vault) Encrypt(ctx context.Context, key, keyContext string, fields map[string][]byte) error {
	if err := b.checkTransitKey(ctx, key, keyContext); err != nil {
		return err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range fields {
			if !yield(k) {
				return
			}
		}
	})
	var b64ctx string
	if keyContext != "" {
		b64ctx = base64.StdEncoding.EncodeToString([]byte(keyContext))
	}
	in := make([]map[string]string, len(names))
	for i, n := range names {
		in[i] = map[string]string{"plaintext": base64.StdEncoding.EncodeToString(fields[n])}
		if b64ctx != "" {
			in[i]["context"] = b64ctx
		}
	}
	ep := b.transit + "/encrypt/" + key
	s, err := b.c.Logical().WriteWithContext(ctx, ep, map[string]any{"batch_input": in})
	if err != nil {
		return b.wrap("write", ep, err)
	}
	var results []struct {
		Ciphertext string `json:"ciphertext"`
		Error      string `json:"error"`
	}
	if s != nil && s.Data != nil {
		raw, _ := json.Marshal(s.Data["batch_results"])
		_ = json.Unmarshal(raw, &results)
	}
	if len(results) != len(names) {
		return newKind(ErrTransit, fmt.Sprintf("transit encrypt with key %s: %d results for %d fields", key, len(results), len(names)))
	}
	for i, r := range results {
		if r.Error != "" || !strings.HasPrefix(r.Ciphertext, "vault:v") {
			return newKind(ErrTransit, fmt.Sprintf("transit encrypt of field %q with key %s: %s", names[i], key, oneLine([]string{r.Error})))
		}
	}
	for i, n := range names {
		wipe(map[string][]byte{n: fields[n]})
		fields[n] = []byte(results[i].Ciphertext)
	}
	return nil
}

// checkTransitKey makes sure the key exists (encrypt would otherwise create
// it) and that --context matches whether it is derived. A token that may
// not read the key skips the check.
func (b *Vault) checkTransitKey(ctx context.Context, key, keyContext string) error {
	ep := b.transit + "/keys/" + key
	s, err := b.c.Logical().ReadWithContext(ctx, ep)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == 403 {
			return nil
		}
		if errors.As(err, &re) && (re.StatusCode == 404 || re.StatusCode == 400) {
			return b.noTransit(key)
		}
		return b.wrap("read", ep, err)
	}
	if s == nil || s.Data == nil {
		return b.noTransit(key)
	}
	derived, _ := s.Data["derived"].(bool)
	switch {
	case derived && keyContext == "":
		return usage(fmt.Sprintf("transit key %s is derived: --context is required (the partner's context)", key))
	case !derived && keyContext != "":
		return usage(fmt.Sprintf("transit key %s is not derived: --context does not apply (drop it, or use a key created with derived=true)", key))
	}
	return nil
}

func (b *Vault) noTransit(key string) error {
	return newKind(ErrTransit, fmt.Sprintf("transit key %s does not exist at %s/ on %s (create it: vault write -f %s/keys/%s derived=true)", key, b.transit, b.addr, b.transit, key))
}

func intOf(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

func timeOf(v any) time.Time {
	s, _ := v.(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
