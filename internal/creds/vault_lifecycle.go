package creds

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// The Vault backend's Lifecycle: Transit key state and rewrap, the token's
// capabilities, and custom metadata.
var _ Lifecycle = (*Vault)(nil)

func (b *Vault) api() *api.Client { return b.c }

// TransitKey reads TRANSIT/keys/KEY.
func (b *Vault) TransitKey(ctx context.Context, key string) (KeyInfo, error) {
	ep := b.transit + "/keys/" + key
	s, err := b.api().Logical().ReadWithContext(ctx, ep)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && (re.StatusCode == 404 || re.StatusCode == 400) {
			return KeyInfo{}, b.noTransit(key)
		}
		return KeyInfo{}, b.wrap("read", ep, err)
	}
	if s == nil || s.Data == nil {
		return KeyInfo{}, b.noTransit(key)
	}
	k := KeyInfo{Name: key, Versions: map[int]time.Time{}}
	k.Derived, _ = s.Data["derived"].(bool)
	k.LatestVersion = intOf(s.Data["latest_version"])
	k.MinDecryptionVersion = intOf(s.Data["min_decryption_version"])
	k.AutoRotatePeriod = time.Duration(intOf(s.Data["auto_rotate_period"])) * time.Second
	keys, _ := s.Data["keys"].(map[string]any)
	for v, raw := range keys {
		n, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		switch t := raw.(type) {
		case json.Number:
			secs, _ := t.Int64()
			k.Versions[n] = time.Unix(secs, 0).UTC()
		case map[string]any: // asymmetric keys
			k.Versions[n] = timeOf(t["creation_time"])
		}
	}
	return k, nil
}

// Rewrap rewraps ciphertexts with one batch call to TRANSIT/rewrap/KEY.
func (b *Vault) Rewrap(ctx context.Context, key, keyContext string, cts []string) ([]string, error) {
	var b64ctx string
	if keyContext != "" {
		b64ctx = base64.StdEncoding.EncodeToString([]byte(keyContext))
	}
	in := make([]map[string]string, len(cts))
	for i, ct := range cts {
		in[i] = map[string]string{"ciphertext": ct}
		if b64ctx != "" {
			in[i]["context"] = b64ctx
		}
	}
	ep := b.transit + "/rewrap/" + key
	s, err := b.api().Logical().WriteWithContext(ctx, ep, map[string]any{"batch_input": in})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == 400 {
			return nil, newKind(ErrTransit, fmt.Sprintf("transit rewrap with key %s: %s", key, oneLine(re.Errors)))
		}
		return nil, b.wrap("write", ep, err)
	}
	var results []struct {
		Ciphertext string `json:"ciphertext"`
		Error      string `json:"error"`
	}
	if s != nil && s.Data != nil {
		raw, _ := json.Marshal(s.Data["batch_results"])
		_ = json.Unmarshal(raw, &results)
	}
	if len(results) != len(cts) {
		return nil, newKind(ErrTransit, fmt.Sprintf("transit rewrap with key %s: %d results for %d ciphertexts", key, len(results), len(cts)))
	}
	out := make([]string, len(results))
	for i, r := range results {
		if r.Error != "" || ciphertextVersion([]byte(r.Ciphertext)) == 0 {
			return nil, newKind(ErrTransit, fmt.Sprintf("transit rewrap with key %s: %s (wrong --context, or ciphertext of another key?)", key, oneLine([]string{r.Error})))
		}
		out[i] = r.Ciphertext
	}
	return out, nil
}

// Capabilities asks sys/capabilities-self (allowed by Vault's default
// policy) about the set's data and metadata paths.
func (b *Vault) Capabilities(ctx context.Context, path string) (Capabilities, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return Capabilities{}, err
	}
	data, meta := mount+"/data/"+rest, mount+"/metadata/"+rest
	s, err := b.api().Logical().WriteWithContext(ctx, "sys/capabilities-self", map[string]any{"paths": []string{data, meta}})
	if err != nil {
		return Capabilities{}, b.wrap("write", "sys/capabilities-self", err)
	}
	var c Capabilities
	if s != nil && s.Data != nil {
		c.Data, c.Metadata = stringsOf(s.Data[data]), stringsOf(s.Data[meta])
	}
	return c, nil
}

func stringsOf(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// customMetadata reads the set's custom metadata (nil when the set does
// not exist).
func (b *Vault) customMetadata(ctx context.Context, path string) (map[string]string, error) {
	mount, rest, err := b.split(ctx, path)
	if err != nil {
		return nil, err
	}
	ep := mount + "/metadata/" + rest
	s, err := b.api().Logical().ReadWithContext(ctx, ep)
	if err != nil {
		return nil, b.wrap("read", ep, err)
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	raw, _ := s.Data["custom_metadata"].(map[string]any)
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if str, ok := v.(string); ok {
			out[k] = str
		}
	}
	return out, nil
}

// ExpiresAt reads custom_metadata.expires_at; zero when unset or when the
// set does not exist.
func (b *Vault) ExpiresAt(ctx context.Context, path string) (time.Time, error) {
	cm, err := b.customMetadata(ctx, path)
	if err != nil {
		return time.Time{}, err
	}
	s := strings.TrimSpace(cm[ExpiresAtKey])
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: custom metadata %s %q is not an RFC 3339 time (fix it with --expires-at)", path, ExpiresAtKey, s)
	}
	return t.UTC(), nil
}

// SetExpiresAt rewrites the set's custom metadata with expires_at set (or
// removed for the zero time), keeping its other keys.
func (b *Vault) SetExpiresAt(ctx context.Context, path string, t time.Time) error {
	cm, err := b.customMetadata(ctx, path)
	if err != nil {
		return err
	}
	if cm == nil {
		cm = map[string]string{}
	}
	if t.IsZero() {
		delete(cm, ExpiresAtKey)
	} else {
		cm[ExpiresAtKey] = t.UTC().Format(time.RFC3339)
	}
	mount, rest, _ := b.split(ctx, path)
	ep := mount + "/metadata/" + rest
	if _, err := b.api().Logical().WriteWithContext(ctx, ep, map[string]any{"custom_metadata": cm}); err != nil {
		return b.wrap("write", ep, err)
	}
	return nil
}
