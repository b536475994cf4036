package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/oneline"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/vault/transit"
)

// Errors a check can end with (wrapped; match with errors.Is).
var (
	ErrDeleted = errors.New("current version is deleted or destroyed")
	ErrInvalid = errors.New("credential set invalid")
	ErrVerify  = errors.New("candidate version failed verification")
	ErrOlder   = errors.New("older than the served version")
)

// errDecrypt is a decryption the same input would fail again (wrong key or
// context, corrupt ciphertext, a wrong master key).
var errDecrypt = errors.New("decrypt failed")

// Fetched is one version of a credential set as a backend read it. The
// pipeline takes Values over: it commits the selected ones to the store
// and wipes the rest.
type Fetched struct {
	Version   int
	CreatedAt time.Time
	// ExpiresAt is when the version stops being valid (KV's scheduled
	// deletion); zero: none. It reaches the store with the commit.
	ExpiresAt time.Time
	// Metadata is the secret's per-version metadata as stored beside it
	// (KV v2 custom metadata; nil for the file backend). It is carried to
	// the commit step, where rules on it (expiry, ...) apply.
	Metadata map[string]string
	// Values holds every field as stored: plain bytes, or Transit
	// ciphertext ("vault:v…") that the backend's Decrypter opens.
	Values map[string][]byte
}

// Decrypter opens a version's Transit ciphertexts: one call per version,
// one fresh plaintext per ciphertext, in order. An error matching
// errDecrypt is one the same ciphertext would repeat.
type Decrypter func(ctx context.Context, names, ciphertexts []string) ([][]byte, error)

// pipeline takes one credential set's fetched versions through select →
// decrypt → validate → verify → commit → report, and is the one place that
// reports a check's outcome: the store's status, credlet_rotations_total,
// the version and last-rotation gauges, audit records and logs, each
// de-duplicated the same way for every backend.
//
// A pipeline is owned by one goroutine at a time.
type pipeline struct {
	cred     credspec.Credential
	st       *store.Store
	o        Options
	log      *slog.Logger
	fetchTag string // audit detail naming the backend on fetch records ("" for Vault)

	served   int    // version being served; 0 before the first commit
	skip     int    // version that failed in a way it would repeat
	skipErr  error  // its failure, reported at every check
	reported int    // gone version already counted and audited
	failing  bool   // the last check failed
	lastMsg  string // the last failure logged at warn: a repeat is logged at debug

	expires   time.Time // the served version's expiry (zero: none)
	expiryErr string    // the last malformed expires_at reported
}

func newPipeline(cred credspec.Credential, st *store.Store, o Options, backend string) *pipeline {
	p := &pipeline{cred: cred, st: st, o: o,
		log: o.Logger.With("component", "source", "backend", backend, "credential", cred.Name, "kv_path", cred.KVPath())}
	if backend != "vault" {
		p.fetchTag = backend + " source"
	}
	return p
}

// Served is the committed version (0: none yet).
func (p *pipeline) Served() int { return p.served }

// Failing reports whether the last check failed.
func (p *pipeline) Failing() bool { return p.failing }

// Skipped returns the repeat failure of version, when it is the one that
// failed in a way it would repeat: the check reports it again without a
// new attempt.
func (p *pipeline) Skipped(version int) (error, bool) {
	if version == 0 || version != p.skip {
		return nil, false
	}
	p.st.MarkError(p.cred.Name, p.skipErr.Error())
	return p.skipErr, true
}

// Unchanged reports a check that found the served version still current.
func (p *pipeline) Unchanged(now time.Time) {
	p.ok()
	p.st.MarkChecked(p.cred.Name, now)
}

// Publish takes f through the pipeline. decrypt may be nil when the
// backend holds no ciphertext. now is when the version was fetched.
func (p *pipeline) Publish(ctx context.Context, f *Fetched, decrypt Decrypter, now time.Time) error {
	defer securemem.WipeFields(f.Values) // whatever was not committed
	ver := f.Version
	p.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: p.cred.Name, Version: ver, Result: "ok", Detail: p.fetchTag})

	fields, ctNames, cts, err := p.selectFields(f.Values)
	if err != nil {
		securemem.WipeFields(fields)
		return p.fail(metrics.RotationInvalid, ver, fmt.Errorf("version %d: %w", ver, err))
	}
	if err := p.decrypt(ctx, ver, fields, ctNames, cts, decrypt); err != nil {
		securemem.WipeFields(fields)
		return err
	}
	if err := p.validate(fields); err != nil {
		securemem.WipeFields(fields)
		return p.fail(metrics.RotationInvalid, ver, fmt.Errorf("version %d: %w", ver, err))
	}
	// A version holding exactly the served values (a Transit rewrap wrote
	// the same plaintext under a newer key version) changes nothing for
	// the app: no blue/green check, and the store keeps its values version,
	// so the app is not notified.
	same := p.served != 0 && p.st.SameValues(p.cred.Name, fields)
	if same {
		p.o.Audit.Log(audit.Record{Event: audit.VerifyEvent, Credential: p.cred.Name, Version: ver, Result: "skipped",
			Detail: fmt.Sprintf("same values as version %d", p.served)})
	} else if err := p.verify(ctx, ver, fields); err != nil {
		securemem.WipeFields(fields)
		return err
	}
	return p.commit(f, fields, now, same)
}

// selectFields picks the fields to deliver out of a version's values: the
// listed ones (each must be present), or all. Plain values move into the
// returned map; ciphertexts are set aside by name.
func (p *pipeline) selectFields(values map[string][]byte) (map[string][]byte, []string, []string, error) {
	names := p.cred.Fields
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(values))
		if len(names) == 0 {
			return nil, nil, nil, fmt.Errorf("%w: the secret has no fields", ErrInvalid)
		}
	}
	have := slices.Sorted(maps.Keys(values))
	fields := make(map[string][]byte, len(names))
	var ctNames, cts []string
	for _, name := range names {
		val, ok := values[name]
		if !ok {
			return fields, nil, nil, fmt.Errorf("%w: field %q missing (the secret has: %s)", ErrInvalid, name, strings.Join(have, ", "))
		}
		if transit.IsCiphertext(val) {
			if p.cred.TransitKey == "" {
				return fields, nil, nil, fmt.Errorf("%w: field %q holds Transit ciphertext but the credential names no transit key (add ;transit=KEY)", ErrInvalid, name)
			}
			ctNames, cts = append(ctNames, name), append(cts, string(val)) // ciphertext, not a secret
			continue
		}
		fields[name] = val
		delete(values, name) // moved: the store wipes it from here on
	}
	return fields, ctNames, cts, nil
}

// decrypt opens the set-aside ciphertexts with one call and adds them to
// fields.
func (p *pipeline) decrypt(ctx context.Context, ver int, fields map[string][]byte, names, cts []string, decrypt Decrypter) error {
	if len(cts) == 0 {
		return nil
	}
	if decrypt == nil {
		return p.fail(metrics.RotationInvalid, ver, fmt.Errorf("version %d: %w: this source cannot decrypt Transit ciphertext", ver, ErrInvalid))
	}
	plain, err := decrypt(ctx, names, cts)
	if err != nil {
		p.o.Audit.Log(audit.Record{Event: audit.Decrypt, Credential: p.cred.Name, Version: ver, Result: "error", Detail: err.Error()})
		repeat := 0
		if errors.Is(err, errDecrypt) {
			repeat = ver
		}
		return p.fail(metrics.RotationDecryptFailed, repeat, fmt.Errorf("version %d: %w", ver, err))
	}
	for i, name := range names {
		fields[name] = plain[i]
	}
	p.o.Audit.Log(audit.Record{Event: audit.Decrypt, Credential: p.cred.Name, Version: ver, Result: "ok",
		Detail: fmt.Sprintf("key=%s fields=%d", p.cred.TransitKey, len(names))})
	return nil
}

// validate checks the decoded fields: listed fields must be non-empty;
// without a list, at least one field must be.
func (p *pipeline) validate(fields map[string][]byte) error {
	if len(p.cred.Fields) > 0 {
		for _, name := range p.cred.Fields {
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

// verify asks the blue/green verifier, if any, about the candidate.
func (p *pipeline) verify(ctx context.Context, ver int, fields map[string][]byte) error {
	if p.o.Verifier == nil {
		return nil
	}
	if err := p.o.Verifier.Verify(ctx, p.cred.Name, ver, fields); err != nil {
		p.o.Audit.Log(audit.Record{Event: audit.VerifyEvent, Credential: p.cred.Name, Version: ver, Result: "failed", Detail: oneline.Of(err.Error(), 200)})
		return p.fail(metrics.RotationVerifyFailed, 0, fmt.Errorf("version %d: %w: %s", ver, ErrVerify, oneline.Of(err.Error(), 200)))
	}
	p.o.Audit.Log(audit.Record{Event: audit.VerifyEvent, Credential: p.cred.Name, Version: ver, Result: "ok"})
	return nil
}

// commit publishes the version and reports it: the one place the version,
// last-rotation and rotations metrics move on success.
func (p *pipeline) commit(f *Fetched, fields map[string][]byte, now time.Time, sameValues bool) error {
	ver := f.Version
	exp, expErr := expiry(f.Metadata, f.ExpiresAt)
	sm := store.Meta{Version: ver, CreatedAt: f.CreatedAt, FetchedAt: now, ExpiresAt: exp}
	counted := func() { // before readers can see the version
		m := p.o.Metrics
		m.Rotations.WithLabelValues(p.cred.Name, metrics.RotationCommitted).Inc()
		m.CredentialVersion.WithLabelValues(p.cred.Name).Set(float64(ver))
		if !sameValues { // a rewrap is not a rotation of the credential
			m.LastRotation.WithLabelValues(p.cred.Name).Set(lastRotation(credspec.RotatedAt(f.Metadata, ver, f.CreatedAt)))
		}
		p.setExpiry(exp, expErr, false)
	}
	if err := p.st.CommitWith(p.cred.Name, sm, fields, counted); err != nil { // wipes fields
		p.o.Audit.Log(audit.Record{Event: audit.Commit, Credential: p.cred.Name, Version: ver, Result: "error", Detail: err.Error()})
		return p.fail("", 0, fmt.Errorf("version %d: %w", ver, err))
	}
	prev := p.served
	p.served, p.skip, p.skipErr = ver, 0, nil
	p.o.Audit.Log(audit.Record{Event: audit.Commit, Credential: p.cred.Name, Version: ver, Result: "ok"})
	p.ok()
	p.log.Info("credential committed", "version", ver, "previous_version", prev, "created_at", f.CreatedAt, "same_values", sameValues)
	if ver < prev { // Vault only: the file backend refuses (ErrOlder)
		p.log.Warn("the current version is older than the one served before: the secret's versions were deleted and written again",
			"version", ver, "previous_version", prev)
	}
	return nil
}

// lastRotation is credlet_credential_last_rotation_timestamp_seconds: the
// version's creation time in fractional Unix seconds.
func lastRotation(created time.Time) float64 { return float64(created.UnixNano()) / 1e9 }

// Gone reports a current version that is deleted, destroyed or revoked:
// the last good version stays live. It is counted (fetch_failed) and
// audited once per version.
func (p *pipeline) Gone(version int, state string) error {
	serving := "nothing to serve yet"
	if p.served != 0 {
		serving = fmt.Sprintf("still serving version %d", p.served)
	}
	err := fmt.Errorf("%w: version %d %s; %s", ErrDeleted, version, state, serving)
	if p.reported != version {
		p.reported = version
		p.o.Metrics.Rotations.WithLabelValues(p.cred.Name, metrics.RotationFetchFailed).Inc()
		p.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: p.cred.Name, Version: version, Result: "deleted", Detail: state})
		p.log.Warn("current version unavailable", "version", version, "state", state, "served_version", p.served)
	}
	p.failing = true
	p.st.MarkError(p.cred.Name, err.Error())
	return err
}

// FetchFailed reports a version the backend could not read (result
// fetch_failed), or could not open at all (decrypt_failed for a file under
// another master key): one rotation attempt that failed.
func (p *pipeline) FetchFailed(result string, version int, err error) error {
	ev := audit.Fetch
	if result == metrics.RotationDecryptFailed {
		ev = audit.Decrypt
	}
	p.o.Audit.Log(audit.Record{Event: ev, Credential: p.cred.Name, Version: version, Result: "error", Detail: err.Error()})
	return p.fail(result, 0, err)
}

// CheckFailed reports a check that could not tell whether a new version
// exists (metadata read failed, the file is unreadable): no rotation was
// attempted, so no rotations_total result moves.
func (p *pipeline) CheckFailed(err error) error { return p.fail("", 0, err) }

// fail reports a failed check. result is the rotations label ("" for a
// check that found no new version to publish); repeat, when not 0, is a
// version that would fail the same way again and is not retried.
func (p *pipeline) fail(result string, repeat int, err error) error {
	msg := err.Error()
	if result != "" {
		p.o.Metrics.Rotations.WithLabelValues(p.cred.Name, result).Inc()
	}
	if repeat != 0 {
		p.skip, p.skipErr = repeat, err
	}
	p.st.MarkError(p.cred.Name, msg)
	repeated := msg == p.lastMsg
	p.lastMsg = msg
	switch {
	case result != "" && !repeated:
		p.log.Warn("credential version not published", "result", result, "error", msg, "served_version", p.served)
	case result != "":
		p.log.Debug("credential version not published (unchanged)", "result", result, "error", msg, "served_version", p.served)
	case !p.failing:
		p.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: p.cred.Name, Result: "error", Detail: msg})
		p.log.Warn("check failed; serving the last good version", "error", msg, "served_version", p.served)
	default:
		p.log.Debug("check failed", "error", msg, "served_version", p.served)
	}
	p.failing = true
	return err
}

func (p *pipeline) ok() {
	if p.failing {
		p.log.Info("check recovered", "served_version", p.served)
		p.o.Audit.Log(audit.Record{Event: audit.Fetch, Credential: p.cred.Name, Version: p.served, Result: "ok", Detail: "recovered"})
	}
	p.failing = false
	p.lastMsg = ""
}
