package transit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/vault"
)

// DefaultMount is where Transit is mounted when Client.Mount is empty.
const DefaultMount = "transit"

// Client calls one Transit mount through one API client. Every operation
// on several values is one batch request.
type Client struct {
	API     *api.Client
	Mount   string // "" : DefaultMount
	MaxBody int    // largest response body read; 0: vault.DefaultMaxBody
}

// New returns a Client on c for the Transit engine at mount ("" : DefaultMount).
func New(c *api.Client, mount string) *Client { return &Client{API: c, Mount: mount} }

// Path is the API path of verb (encrypt, decrypt, rewrap, keys) for key.
func (c *Client) Path(verb, key string) string { return c.mount() + "/" + verb + "/" + key }

// MountPath is the Transit mount in use.
func (c *Client) MountPath() string { return c.mount() }

func (c *Client) mount() string {
	if m := strings.Trim(c.Mount, "/"); m != "" {
		return m
	}
	return DefaultMount
}

func (c *Client) maxBody() int {
	if c.MaxBody > 0 {
		return c.MaxBody
	}
	return vault.DefaultMaxBody
}

// item is one batch entry in either direction. Plaintext is base64 on the
// wire; encoding/json decodes it straight into a fresh slice.
type item struct {
	Plaintext  []byte `json:"plaintext,omitempty"`
	Ciphertext string `json:"ciphertext,omitempty"`
	Context    string `json:"context,omitempty"`
	Error      string `json:"error,omitempty"`
}

func wipeItems(items []item) {
	for i := range items {
		clear(items[i].Plaintext)
	}
}

// batch posts in to MOUNT/OP/KEY and returns one result per input. A
// refused item is a *vault.BatchItemError (Transit answers 400 with one
// error per item when any fails); the caller wipes the results'
// plaintexts.
func (c *Client) batch(ctx context.Context, op, verb, key, keyContext string, in []item) ([]item, error) {
	if keyContext != "" {
		b64 := base64.StdEncoding.EncodeToString([]byte(keyContext))
		for i := range in {
			in[i].Context = b64
		}
	}
	body, err := json.Marshal(map[string]any{"batch_input": in})
	if err != nil {
		return nil, err
	}
	defer clear(body)
	resp, err := c.API.Logical().WriteRawWithContext(vault.WithOp(ctx, op), c.mount()+"/"+verb+"/"+key, body)
	defer vault.CloseBody(resp)
	var out struct {
		Data struct {
			BatchResults []item `json:"batch_results"`
		} `json:"data"`
	}
	var perr error
	if resp != nil && resp.Body != nil {
		// Parse even on error: a failed batch answers 400 with one error per item.
		perr = vault.DecodeBody(resp, c.maxBody(), &out)
	}
	results := out.Data.BatchResults
	for i, r := range results {
		if r.Error != "" {
			wipeItems(results)
			return nil, &vault.BatchItemError{Op: op, Index: i, Msg: r.Error}
		}
	}
	switch {
	case err != nil:
		// The request error names the status and Vault's messages; a body
		// that did not parse is what Wrap calls a non-JSON error body.
		wipeItems(results)
		return nil, vault.Wrap(op, err)
	case perr != nil:
		wipeItems(results)
		return nil, fmt.Errorf("%s: %w: %w", op, vault.ErrBadResponse, perr)
	case len(results) != len(in):
		wipeItems(results)
		return nil, fmt.Errorf("%s: %w: %d results for %d items", op, vault.ErrBadResponse, len(results), len(in))
	}
	return results, nil
}

// Decrypt decrypts every ciphertext under key (and the derived-key
// context, if any) with one batch call. It returns one fresh plaintext
// slice per ciphertext, in order; the caller owns and wipes them.
func (c *Client) Decrypt(ctx context.Context, key, keyContext string, ciphertexts []string) ([][]byte, error) {
	in := make([]item, len(ciphertexts))
	for i, ct := range ciphertexts {
		in[i].Ciphertext = ct
	}
	results, err := c.batch(ctx, vault.OpTransitDecrypt, "decrypt", key, keyContext, in)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(results))
	for i := range results {
		out[i], results[i].Plaintext = results[i].Plaintext, nil
	}
	return out, nil
}

// Encrypt encrypts every plaintext under key (and context) with one batch
// call and returns the ciphertexts ("vault:vN:..."), in order. Encrypt
// creates a missing key: check it first with Key.
func (c *Client) Encrypt(ctx context.Context, key, keyContext string, plaintexts [][]byte) ([]string, error) {
	in := make([]item, len(plaintexts))
	for i, p := range plaintexts {
		in[i].Plaintext = p
	}
	return c.ciphertexts(ctx, vault.OpTransitEncrypt, "encrypt", key, keyContext, in)
}

// Rewrap re-encrypts every ciphertext under the key's latest version
// without revealing the plaintext, with one batch call.
func (c *Client) Rewrap(ctx context.Context, key, keyContext string, cts []string) ([]string, error) {
	in := make([]item, len(cts))
	for i, ct := range cts {
		in[i].Ciphertext = ct
	}
	return c.ciphertexts(ctx, vault.OpTransitRewrap, "rewrap", key, keyContext, in)
}

// ciphertexts runs a batch whose results are ciphertexts and returns them,
// in order.
func (c *Client) ciphertexts(ctx context.Context, op, verb, key, keyContext string, in []item) ([]string, error) {
	results, err := c.batch(ctx, op, verb, key, keyContext, in)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(results))
	for i, r := range results {
		if !IsCiphertext([]byte(r.Ciphertext)) {
			return nil, fmt.Errorf("%s: %w: item %d is not Transit ciphertext", op, vault.ErrBadResponse, i)
		}
		out[i] = r.Ciphertext
	}
	return out, nil
}

// IsCiphertext reports whether b looks like Transit ciphertext
// ("vault:vN:..."). It takes bytes so a plaintext value is checked without
// a string copy of it.
func IsCiphertext(b []byte) bool {
	rest, ok := bytes.CutPrefix(b, []byte("vault:v"))
	if !ok {
		return false
	}
	digits := 0
	for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	return digits > 0 && digits < len(rest) && rest[digits] == ':'
}

// KeyVersion returns N of a "vault:vN:..." ciphertext, or 0.
func KeyVersion(ct string) int {
	if !IsCiphertext([]byte(ct)) {
		return 0
	}
	n, _, _ := strings.Cut(strings.TrimPrefix(ct, "vault:v"), ":")
	v, err := strconv.Atoi(n)
	if err != nil {
		return 0
	}
	return v
}

// Key is a Transit key's configuration: no key material.
type Key struct {
	Name                 string
	Type                 string
	Derived              bool
	LatestVersion        int
	MinDecryptionVersion int
	AutoRotatePeriod     time.Duration // 0: off
	Versions             map[int]time.Time
}

// Key reads MOUNT/keys/KEY. A missing key matches vault.ErrNotFound.
func (c *Client) Key(ctx context.Context, key string) (Key, error) {
	resp, err := c.API.Logical().ReadRawWithContext(vault.WithOp(ctx, vault.OpTransitKey), c.mount()+"/keys/"+key)
	defer vault.CloseBody(resp)
	if err != nil {
		return Key{}, vault.Wrap(vault.OpTransitKey, err)
	}
	var out struct {
		Data struct {
			Name                 string                     `json:"name"`
			Type                 string                     `json:"type"`
			Derived              bool                       `json:"derived"`
			LatestVersion        int                        `json:"latest_version"`
			MinDecryptionVersion int                        `json:"min_decryption_version"`
			AutoRotatePeriod     int64                      `json:"auto_rotate_period"`
			Keys                 map[string]json.RawMessage `json:"keys"`
		} `json:"data"`
	}
	if err := vault.DecodeBody(resp, c.maxBody(), &out); err != nil {
		return Key{}, fmt.Errorf("%s %s: %w: %w", vault.OpTransitKey, key, vault.ErrBadResponse, err)
	}
	d := out.Data
	k := Key{Name: d.Name, Type: d.Type, Derived: d.Derived, LatestVersion: d.LatestVersion,
		MinDecryptionVersion: d.MinDecryptionVersion, AutoRotatePeriod: time.Duration(d.AutoRotatePeriod) * time.Second,
		Versions: make(map[int]time.Time, len(d.Keys))}
	for v, raw := range d.Keys {
		n, err := strconv.Atoi(v)
		if err != nil {
			return Key{}, fmt.Errorf("%s %s: %w: version key %q", vault.OpTransitKey, key, vault.ErrBadResponse, v)
		}
		t, err := keyTime(raw)
		if err != nil {
			return Key{}, fmt.Errorf("%s %s: %w: version %d: %w", vault.OpTransitKey, key, vault.ErrBadResponse, n, err)
		}
		k.Versions[n] = t
	}
	return k, nil
}

// keyTime reads a key version's creation time: Unix seconds for symmetric
// keys, an object with creation_time for asymmetric ones.
func keyTime(raw json.RawMessage) (time.Time, error) {
	var secs int64
	if err := json.Unmarshal(raw, &secs); err == nil {
		return time.Unix(secs, 0).UTC(), nil
	}
	var obj struct {
		CreationTime time.Time `json:"creation_time"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return time.Time{}, errors.New("neither Unix seconds nor an object with creation_time")
	}
	return obj.CreationTime, nil
}
