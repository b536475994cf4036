package source

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/credlet/credlet/internal/vault"
)

// errDecrypt is a decryption the same ciphertext would fail again (wrong
// key or context, corrupt ciphertext).
var errDecrypt = errors.New("transit decrypt failed")

type batchItem struct {
	Ciphertext string `json:"ciphertext"`
	Context    string `json:"context,omitempty"`
}

// decrypt decrypts every ciphertext with one batch call to
// TRANSIT/decrypt/KEY. It returns one fresh plaintext slice per ciphertext,
// in order; the caller owns (and wipes) them.
func (v *Vault) decrypt(ctx context.Context, names, ciphertexts []string) ([][]byte, error) {
	var b64ctx string
	if v.cred.Context != "" {
		b64ctx = base64.StdEncoding.EncodeToString([]byte(v.cred.Context))
	}
	in := make([]batchItem, len(ciphertexts))
	for i, ct := range ciphertexts {
		in[i] = batchItem{Ciphertext: ct, Context: b64ctx}
	}
	body, err := json.Marshal(map[string]any{"batch_input": in})
	if err != nil {
		return nil, err
	}
	path := v.o.TransitMount + "/decrypt/" + v.cred.TransitKey
	resp, err := v.c.Logical().WriteRawWithContext(vault.WithOp(ctx, vault.OpTransitDecrypt), path, body)
	defer closeBody(resp)
	var results []batchResult
	if resp != nil && resp.Body != nil {
		// Parse even on error: a failed batch answers 400 with one error per item.
		results, _ = v.parseBatch(resp.Body, resp.ContentLength)
	}
	defer func() {
		for _, r := range results {
			clear(r.Plaintext)
		}
	}()
	for i, r := range results {
		if r.Error != "" && i < len(names) {
			return nil, fmt.Errorf("%w: field %q: %s", errDecrypt, names[i], r.Error)
		}
	}
	if err != nil {
		err = vault.Wrap(vault.OpTransitDecrypt, err)
		if vault.IsPermanent(err) && !vault.IsTokenRejected(err) {
			return nil, fmt.Errorf("%w: %w", errDecrypt, err)
		}
		return nil, err
	}
	if len(results) != len(ciphertexts) {
		return nil, fmt.Errorf("%s: %d results for %d ciphertexts", vault.OpTransitDecrypt, len(results), len(ciphertexts))
	}
	out := make([][]byte, len(results))
	for i := range results {
		out[i], results[i].Plaintext = results[i].Plaintext, nil
	}
	return out, nil
}

type batchResult struct {
	Plaintext []byte `json:"plaintext"` // base64 on the wire, decoded straight into this slice
	Error     string `json:"error"`
}

func (v *Vault) parseBatch(r io.Reader, size int64) ([]batchResult, error) {
	body, err := readBody(r, size, v.o.MaxBody)
	if err != nil {
		return nil, err
	}
	defer clear(body)
	var out struct {
		Data struct {
			BatchResults []batchResult `json:"batch_results"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		for _, r := range out.Data.BatchResults {
			clear(r.Plaintext)
		}
		return nil, err
	}
	return out.Data.BatchResults, nil
}
