package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/kv"
	"github.com/credlet/credlet/internal/vault/transit"
)

// Vault keeps one credential set fresh from a KV v2 secret: the backend
// that polls metadata and reads new versions, feeding the shared pipeline.
type Vault struct {
	kv   *kv.Client
	tr   *transit.Client
	cred credspec.Credential
	o    Options
	p    *pipeline // owned by the goroutine in Run or Once (never both at once)
	pace *pace     // owned by the goroutine in Run
}

// NewVault returns the source of cred, committing into st (which must
// declare cred.Name). It does nothing until Run or Once.
func NewVault(c *api.Client, cred credspec.Credential, st *store.Store, opts Options) *Vault {
	o := opts.withDefaults()
	return &Vault{
		kv:   &kv.Client{API: c, MaxBody: o.MaxBody},
		tr:   &transit.Client{API: c, Mount: o.TransitMount, MaxBody: o.MaxBody},
		cred: cred, o: o, p: newPipeline(cred, st, o, "vault"), pace: newPace(o),
	}
}

// Run polls Vault until ctx ends, then returns nil. It starts no goroutines.
func (v *Vault) Run(ctx context.Context) error {
	if v.o.Tokens != nil {
		if err := v.o.Tokens.WaitReady(ctx); err != nil {
			return nil
		}
	}
	for {
		err := v.checkOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		t := v.o.Clock.NewTimer(v.pace.next(v.o.Clock.Now(), err))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// Once waits for a token, then fetches and commits the current version
// (for --once, a classic init container). Transient failures (network,
// 5xx, sealed) are retried with backoff until ctx ends; it returns at once
// when the version cannot be published (invalid, deleted, undecryptable,
// refused by the verifier, denied by policy).
func (v *Vault) Once(ctx context.Context) error {
	if v.o.Tokens != nil {
		if err := v.o.Tokens.WaitReady(ctx); err != nil {
			return fmt.Errorf("credential %s: waiting for a Vault token: %w", v.cred.Name, err)
		}
	}
	bo := backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(time.Minute),
		backoff.WithInitialInterval(time.Second), backoff.WithMultiplier(2), backoff.WithRandomizationFactor(0.2),
		backoff.WithClockProvider(v.o.Clock))
	for {
		err := v.checkOnce(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return fmt.Errorf("credential %s: %w", v.cred.Name, err)
		}
		wait := bo.NextBackOff()
		if ra, ok := vault.RetryAfter(err); ok {
			wait = max(wait, ra)
		}
		t := v.o.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("credential %s: %w (gave up: %w)", v.cred.Name, err, ctx.Err())
		case <-t.C():
		}
	}
}

// retryable reports whether a failed check may succeed if tried again soon.
func retryable(err error) bool {
	for _, final := range []error{ErrInvalid, ErrDeleted, ErrVerify, errDecrypt, vault.ErrNotFound} {
		if errors.Is(err, final) {
			return false
		}
	}
	return !vault.IsPermanent(err)
}

// decrypt decrypts the ciphertexts of the fields named in names with one
// batch call; the caller owns and wipes the plaintexts.
func (v *Vault) decrypt(ctx context.Context, names, cts []string) ([][]byte, error) {
	plain, err := v.tr.Decrypt(ctx, v.cred.TransitKey, v.cred.Context, cts)
	var item *vault.BatchItemError
	switch {
	case errors.As(err, &item) && item.Index < len(names):
		return nil, fmt.Errorf("transit %w: field %q: %s", errDecrypt, names[item.Index], item.Msg)
	case err != nil && vault.IsPermanent(err) && !vault.IsTokenRejected(err):
		return nil, fmt.Errorf("%w: %w", errDecrypt, err)
	}
	return plain, err
}

// checkOnce runs a check; when Vault refused the token it asks for a fresh
// one, waits for it (at most one refresh) and checks once more.
func (v *Vault) checkOnce(ctx context.Context) error {
	err := v.check(ctx)
	if err == nil || v.o.Tokens == nil || !vault.IsTokenRejected(err) || ctx.Err() != nil {
		return err
	}
	v.o.Tokens.Invalidate()
	wctx, cancel := context.WithTimeout(ctx, v.o.Refresh)
	defer cancel()
	if v.o.Tokens.WaitReady(wctx) != nil {
		return err
	}
	return v.check(ctx)
}

// check compares Vault's current version with the served one and fetches it
// when they differ.
func (v *Vault) check(ctx context.Context) error {
	version := 0 // the latest: at start, the data read tells the version
	if v.p.Served() != 0 || v.p.skip != 0 {
		md, err := v.kv.Metadata(ctx, v.cred.Mount, v.cred.Path)
		if err != nil {
			return v.p.CheckFailed(fmt.Errorf("read metadata: %w", err))
		}
		cur := md.CurrentVersion
		if cur == 0 {
			return v.p.CheckFailed(fmt.Errorf("%s has no versions", v.cred.KVPath()))
		}
		if cur == v.p.Served() {
			// The expiry lives in the metadata just read: it may move
			// without a new version.
			exp, expErr := expiryOf(md, cur)
			v.p.setExpiry(exp, expErr, true)
			v.p.Unchanged(v.o.Clock.Now())
			return nil
		}
		if err, skipped := v.p.Skipped(cur); skipped {
			return err
		}
		if vm, ok := md.Versions[cur]; ok && vm.Gone(v.o.Clock.Now()) {
			return v.p.Gone(vm.Version, vm.Describe())
		}
		version = cur
	}
	return v.fetch(ctx, version)
}

// fetch reads a version and hands it to the pipeline.
func (v *Vault) fetch(ctx context.Context, version int) error {
	now := v.o.Clock.Now()
	kver, err := v.kv.Read(ctx, v.cred.Mount, v.cred.Path, version)
	defer kver.Wipe()
	var gone *kv.DeletedError
	switch {
	case errors.As(err, &gone):
		return v.p.Gone(gone.Meta.Version, gone.Meta.Describe())
	case err != nil:
		return v.p.FetchFailed(metrics.RotationFetchFailed, version, fmt.Errorf("read data: %w", err))
	}
	values, err := decodeValues(kver.Data)
	kver.Wipe()
	if err != nil {
		securemem.WipeFields(values)
		return v.p.fail(metrics.RotationInvalid, kver.Meta.Version, fmt.Errorf("version %d: %w", kver.Meta.Version, err))
	}
	return v.p.Publish(ctx, &Fetched{
		Version:   kver.Meta.Version,
		CreatedAt: kver.Meta.CreatedTime,
		ExpiresAt: kver.Meta.DeletionTime, // scheduled deletion (delete_version_after)
		Metadata:  kver.CustomMetadata,
		Values:    values,
	}, v.decrypt, now)
}

// decodeValues decodes every raw JSON value into fresh bytes.
func decodeValues(raw map[string]json.RawMessage) (map[string][]byte, error) {
	out := make(map[string][]byte, len(raw))
	for name, r := range raw {
		val, err := kv.Value(r)
		if err != nil {
			return out, fmt.Errorf("%w: field %q: %w", ErrInvalid, name, err)
		}
		out[name] = val
	}
	return out, nil
}
