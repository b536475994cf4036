package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/oneline"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/kv"
	"github.com/credlet/credlet/internal/vault/transit"
)

// Errors a check can end with (wrapped; match with errors.Is).
var (
	ErrDeleted = errors.New("current version is deleted or destroyed in Vault")
	ErrInvalid = errors.New("credential set invalid")
	ErrVerify  = errors.New("candidate version failed verification")
)

// Vault keeps one credential set fresh from a KV v2 secret.
type Vault struct {
	kv   *kv.Client
	tr   *transit.Client
	cred credspec.Credential
	st   *store.Store
	o    Options
	log  *slog.Logger

	// Owned by the goroutine in Run or Once (never both at once).
	served   int    // version being served; 0 before the first commit
	skip     int    // version that failed in a way it would repeat
	skipErr  error  // its failure, reported at every check
	reported int    // deleted version already counted and audited
	failing  bool   // the last check failed
	lastMsg  string // the last failure logged at warn: a repeat is logged at debug
}

// NewVault returns the source of cred, committing into st (which must
// declare cred.Name). It does nothing until Run or Once.
func NewVault(c *api.Client, cred credspec.Credential, st *store.Store, opts Options) *Vault {
	o := opts.withDefaults()
	return &Vault{kv: &kv.Client{API: c, MaxBody: o.MaxBody}, tr: &transit.Client{API: c, Mount: o.TransitMount, MaxBody: o.MaxBody}, cred: cred, st: st, o: o,
		log: o.Logger.With("component", "source", "credential", cred.Name, "kv_path", cred.KVPath())}
}

// Run polls Vault until ctx ends, then returns nil. It starts no goroutines.
func (v *Vault) Run(ctx context.Context) error {
	if v.o.Tokens != nil {
		if err := v.o.Tokens.WaitReady(ctx); err != nil {
			return nil
		}
	}
	for {
		_ = v.checkOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		t := v.o.Clock.NewTimer(v.interval())
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
		t := v.o.Clock.NewTimer(bo.NextBackOff())
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

// errDecrypt is a decryption the same ciphertext would fail again (wrong
// key or context, corrupt ciphertext, a key the policy may not use).
var errDecrypt = errors.New("transit decrypt failed")

// decrypt decrypts the ciphertexts of the fields named in names with one
// batch call; the caller owns and wipes the plaintexts.
func (v *Vault) decrypt(ctx context.Context, names, cts []string) ([][]byte, error) {
	plain, err := v.tr.Decrypt(ctx, v.cred.TransitKey, v.cred.Context, cts)
	var item *vault.BatchItemError
	switch {
	case errors.As(err, &item) && item.Index < len(names):
		return nil, fmt.Errorf("%w: field %q: %s", errDecrypt, names[item.Index], item.Msg)
	case err != nil && vault.IsPermanent(err) && !vault.IsTokenRejected(err):
		return nil, fmt.Errorf("%w: %w", errDecrypt, err)
	}
	return plain, err
}

// interval is Refresh ± Jitter.
func (v *Vault) interval() time.Duration {
	f := 1 + v.o.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(v.o.Refresh) * f)
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
	if v.served != 0 || v.skip != 0 {
		md, err := v.kv.Metadata(ctx, v.cred.Mount, v.cred.Path)
		if err != nil {
			return v.fail("", 0, fmt.Errorf("read metadata: %w", err))
		}
		cur := md.CurrentVersion
		switch {
		case cur == 0:
			return v.fail("", 0, fmt.Errorf("%s has no versions", v.cred.KVPath()))
		case cur == v.served:
			v.ok()
			v.st.MarkChecked(v.cred.Name, v.o.Clock.Now())
			return nil
		case cur == v.skip:
			v.st.MarkError(v.cred.Name, v.skipErr.Error())
			return v.skipErr
		}
		if vm, ok := md.Versions[cur]; ok && vm.Gone(v.o.Clock.Now()) {
			return v.deleted(vm)
		}
		version = cur
	}
	return v.fetch(ctx, version)
}

// fetch reads, decrypts, validates, verifies and commits a version.
func (v *Vault) fetch(ctx context.Context, version int) error {
	now := v.o.Clock.Now()
	kver, err := v.kv.Read(ctx, v.cred.Mount, v.cred.Path, version)
	defer kver.Wipe()
	raw, meta := kver.Data, kver.Meta
	switch {
	case errors.Is(err, vault.ErrDeleted):
		return v.deleted(meta)
	case err != nil:
		v.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: v.cred.Name, Version: version, Result: "error", Detail: err.Error()})
		return v.fail(metrics.RotationFetchFailed, 0, fmt.Errorf("read data: %w", err))
	}
	ver := meta.Version
	v.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: v.cred.Name, Version: ver, Result: "ok"})

	fields, ctNames, cts, err := v.selectFields(raw)
	kver.Wipe()
	if err != nil {
		securemem.WipeFields(fields)
		return v.fail(metrics.RotationInvalid, ver, fmt.Errorf("version %d: %w", ver, err))
	}
	if len(cts) > 0 {
		plain, err := v.decrypt(ctx, ctNames, cts)
		if err != nil {
			securemem.WipeFields(fields)
			v.o.Audit.Log(audit.Record{Event: audit.Decrypt, Credential: v.cred.Name, Version: ver, Result: "error", Detail: err.Error()})
			repeat := 0
			if errors.Is(err, errDecrypt) {
				repeat = ver
			}
			return v.fail(metrics.RotationDecryptFailed, repeat, fmt.Errorf("version %d: %w", ver, err))
		}
		for i, name := range ctNames {
			fields[name] = plain[i]
		}
		v.o.Audit.Log(audit.Record{Event: audit.Decrypt, Credential: v.cred.Name, Version: ver, Result: "ok",
			Detail: fmt.Sprintf("key=%s fields=%d", v.cred.TransitKey, len(ctNames))})
	}
	if err := v.validate(fields); err != nil {
		securemem.WipeFields(fields)
		return v.fail(metrics.RotationInvalid, ver, fmt.Errorf("version %d: %w", ver, err))
	}
	if v.o.Verifier != nil {
		if err := v.o.Verifier.Verify(ctx, v.cred.Name, ver, fields); err != nil {
			securemem.WipeFields(fields)
			v.o.Audit.Log(audit.Record{Event: eventVerify, Credential: v.cred.Name, Version: ver, Result: "failed", Detail: oneline.Of(err.Error(), 200)})
			return v.fail(metrics.RotationVerifyFailed, 0, fmt.Errorf("version %d: %w: %s", ver, ErrVerify, oneline.Of(err.Error(), 200)))
		}
		v.o.Audit.Log(audit.Record{Event: eventVerify, Credential: v.cred.Name, Version: ver, Result: "ok"})
	}
	sm := store.Meta{Version: ver, CreatedAt: meta.CreatedTime, FetchedAt: now}
	if !meta.DeletionTime.IsZero() {
		sm.ExpiresAt = meta.DeletionTime // scheduled deletion (delete_version_after)
	}
	if err := v.st.Commit(v.cred.Name, sm, fields); err != nil { // wipes fields
		v.o.Audit.Log(audit.Record{Event: audit.Commit, Credential: v.cred.Name, Version: ver, Result: "error", Detail: err.Error()})
		return v.fail("", 0, fmt.Errorf("version %d: %w", ver, err))
	}
	prev := v.served
	v.served, v.skip, v.skipErr = ver, 0, nil
	if m := v.o.Metrics; m != nil {
		m.Rotations.WithLabelValues(v.cred.Name, metrics.RotationCommitted).Inc()
		m.CredentialVersion.WithLabelValues(v.cred.Name).Set(float64(ver))
		m.LastRotation.WithLabelValues(v.cred.Name).Set(float64(meta.CreatedTime.UnixNano()) / 1e9)
	}
	v.o.Audit.Log(audit.Record{Event: audit.Commit, Credential: v.cred.Name, Version: ver, Result: "ok"})
	v.ok()
	v.log.Info("credential committed", "version", ver, "previous_version", prev, "created_at", meta.CreatedTime)
	return nil
}

// selectFields picks the fields to deliver out of a version's raw values:
// plain values decoded into fresh slices, ciphertexts set aside by name.
func (v *Vault) selectFields(raw map[string]json.RawMessage) (map[string][]byte, []string, []string, error) {
	names := v.cred.Fields
	if len(names) == 0 {
		names = make([]string, 0, len(raw))
		for k := range raw {
			names = append(names, k)
		}
		slices.Sort(names)
		if len(names) == 0 {
			return nil, nil, nil, fmt.Errorf("%w: the secret has no fields", ErrInvalid)
		}
	}
	fields := make(map[string][]byte, len(names))
	var ctNames, cts []string
	for _, name := range names {
		r, ok := raw[name]
		if !ok {
			return fields, nil, nil, fmt.Errorf("%w: field %q missing (the secret has: %s)", ErrInvalid, name, strings.Join(sortedKeys(raw), ", "))
		}
		val, err := kv.Value(r)
		if err != nil {
			return fields, nil, nil, fmt.Errorf("%w: field %q: %w", ErrInvalid, name, err)
		}
		if transit.IsCiphertext(val) {
			if v.cred.TransitKey == "" {
				clear(val)
				return fields, nil, nil, fmt.Errorf("%w: field %q holds Transit ciphertext but the credential names no transit key (add ;transit=KEY)", ErrInvalid, name)
			}
			ctNames, cts = append(ctNames, name), append(cts, string(val)) // ciphertext, not a secret
			continue
		}
		fields[name] = val
	}
	return fields, ctNames, cts, nil
}

// validate checks the decoded fields: listed fields must be non-empty;
// without a list, at least one field must be.
func (v *Vault) validate(fields map[string][]byte) error {
	if len(v.cred.Fields) > 0 {
		for _, name := range v.cred.Fields {
			if len(fields[name]) == 0 {
				return fmt.Errorf("%w: required field %q is empty", ErrInvalid, name)
			}
		}
		return nil
	}
	for _, f := range fields {
		if len(f) > 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: every field is empty", ErrInvalid)
}

// deleted reports a current version that is deleted or destroyed: the last
// good version stays live.
func (v *Vault) deleted(vm kv.VersionMeta) error {
	serving := "nothing to serve yet"
	if v.served != 0 {
		serving = fmt.Sprintf("still serving version %d", v.served)
	}
	err := fmt.Errorf("%w: version %d %s; %s", ErrDeleted, vm.Version, vm.Describe(), serving)
	if v.reported != vm.Version {
		v.reported = vm.Version
		if v.o.Metrics != nil {
			v.o.Metrics.Rotations.WithLabelValues(v.cred.Name, metrics.RotationFetchFailed).Inc()
		}
		v.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: v.cred.Name, Version: vm.Version, Result: "deleted", Detail: vm.Describe()})
		v.log.Warn("current version unavailable in Vault", "version", vm.Version, "state", vm.Describe(), "served_version", v.served)
	}
	v.failing = true
	v.st.MarkError(v.cred.Name, err.Error())
	return err
}

// fail reports a failed check. result is the rotations label ("" for a
// check that found no new version to publish); repeat, when not 0, is a
// version that would fail the same way again and is not retried.
func (v *Vault) fail(result string, repeat int, err error) error {
	msg := err.Error()
	if result != "" && v.o.Metrics != nil {
		v.o.Metrics.Rotations.WithLabelValues(v.cred.Name, result).Inc()
	}
	if repeat != 0 {
		v.skip, v.skipErr = repeat, err
	}
	v.st.MarkError(v.cred.Name, msg)
	repeated := msg == v.lastMsg
	v.lastMsg = msg
	switch {
	case result != "" && !repeated:
		v.log.Warn("credential version not published", "result", result, "error", msg, "served_version", v.served)
	case result != "":
		v.log.Debug("credential version not published (unchanged)", "result", result, "error", msg, "served_version", v.served)
	case !v.failing:
		v.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: v.cred.Name, Result: "error", Detail: msg})
		v.log.Warn("vault check failed; serving the last good version", "error", msg, "served_version", v.served)
	default:
		v.log.Debug("vault check failed", "error", msg, "served_version", v.served)
	}
	v.failing = true
	return err
}

func (v *Vault) ok() {
	if v.failing {
		v.log.Info("vault check recovered", "served_version", v.served)
		v.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: v.cred.Name, Version: v.served, Result: "ok", Detail: "recovered"})
	}
	v.failing = false
	v.lastMsg = ""
}

func sortedKeys(m map[string]json.RawMessage) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// eventVerify is the audit "verify" event (spelled out: the audit package's
// constant name has moved while it was written).
const eventVerify = audit.Event("verify")
