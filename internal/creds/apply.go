package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// ApplyOptions shape creds apply.
type ApplyOptions struct {
	DryRun  bool
	Journal string           // JSON-lines journal file to create; "" for none
	Now     func() time.Time // time.Now if nil
}

// Errors apply ends with (the command exits 1).
var (
	ErrPlanInvalid = errors.New("plan invalid")
	ErrApplyFailed = errors.New("apply failed")
)

// rollbackTimeout bounds the rollback of an apply that failed part-way; it
// runs even when the command's context was cancelled.
const rollbackTimeout = 2 * time.Minute

// Apply runs a bulk rotation plan: it validates every entry first (and
// with o.DryRun stops there, printing one line per entry); only when all
// of them pass does it write, entry by entry, with check-and-set on the
// version it validated, recording each write in the journal as it goes.
// If a write fails, the entries already written are rolled back (their
// previous data written as a new version) and the error says what failed
// and what was rolled back. Nothing it prints holds a value.
func Apply(ctx context.Context, b Backend, planFile string, o ApplyOptions, out io.Writer) error {
	lb, err := lifecycle(b, "creds apply")
	if err != nil {
		return err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	plan, err := LoadPlan(planFile)
	if err != nil {
		return err
	}
	var j *Journal
	if o.Journal != "" && !o.DryRun {
		// Before any Vault request: a journal that cannot be written
		// stops the apply before it starts.
		if j, err = CreateJournal(o.Journal, now); err != nil {
			return err
		}
		defer j.Close()
	}
	entries := validatePlan(ctx, lb, plan, filepath.Dir(planFile), now())
	defer func() {
		for _, p := range entries {
			p.wipe()
		}
	}()
	bad := 0
	for _, p := range entries {
		if len(p.problems) > 0 {
			bad++
		}
		if len(p.problems) > 0 || o.DryRun {
			printPlanned(out, p)
		}
	}
	if bad > 0 {
		return &kindError{kind: ErrPlanInvalid, msg: fmt.Sprintf("plan %s: %d of %d entries have problems (listed above); nothing written", planFile, bad, len(entries))}
	}
	if o.DryRun {
		fmt.Fprintf(out, "plan %s: %d entries valid on %s; nothing written (dry run)\n", planFile, len(entries), lb.Describe())
		return nil
	}

	var written []applied
	for _, p := range entries {
		if err := j.Append(JournalRecord{Op: JournalIntent, Path: p.path, VersionBefore: p.current}); err != nil {
			fmt.Fprintf(out, "FAILED %s: %s\n", p.label(), oneLineErr(err))
			return rollbackApplied(ctx, lb, p, err, written, entries, j, o.Journal, out)
		}
		a, err := applyEntry(ctx, lb, p)
		if err == nil {
			written = append(written, a)
			err = j.Append(JournalRecord{Op: JournalApply, Path: p.path, VersionBefore: p.current, VersionAfter: a.version, ExpiresAtBefore: a.expBefore})
			if err == nil {
				fmt.Fprintf(out, "rotated %s: version %d -> %d\n", p.label(), p.current, a.version)
				continue
			}
			err = fmt.Errorf("written as version %d, but %w", a.version, err)
		}
		fmt.Fprintf(out, "FAILED %s: %s\n", p.label(), oneLineErr(err))
		return rollbackApplied(ctx, lb, p, err, written, entries, j, o.Journal, out)
	}
	fmt.Fprintf(out, "plan %s: %d entries rotated on %s\n", planFile, len(entries), lb.Describe())
	return nil
}

// applied is an entry apply wrote.
type applied struct {
	p         *planned
	version   int
	expBefore string // formatExpiry of the expiry before, when the entry changed it
}

// applyEntry encrypts the entry's values as asked, keeps the fields not
// given, and writes the set on top of the version validated. An expiry is
// written first, so an agent that sees the new version sees its expiry.
func applyEntry(ctx context.Context, b Lifecycle, p *planned) (applied, error) {
	a := applied{p: p}
	fields := make(map[string][]byte, len(p.values)+len(p.kept))
	for k, v := range p.values {
		fields[k] = slices.Clone(v)
	}
	if _, err := encrypt(ctx, b, fields, p.opts); err != nil {
		securemem.WipeFields(fields)
		return a, err
	}
	for _, k := range p.kept {
		fields[k] = slices.Clone(p.old[k])
	}
	if p.expires != nil {
		if err := b.SetExpiresAt(ctx, p.path, *p.expires); err != nil {
			securemem.WipeFields(fields)
			return a, err
		}
		a.expBefore = formatExpiry(p.expBefore)
	}
	v, err := b.Write(ctx, p.path, fields, p.current) // wipes fields
	if err != nil {
		if p.expires != nil {
			restoreExpiry(ctx, b, p.path, a.expBefore)
		}
		return a, err
	}
	a.version = v
	return a, nil
}

// rollbackApplied undoes the entries written before failed failed, newest
// first, each with check-and-set on the version apply wrote, and returns
// the apply's error saying what failed and what was rolled back.
func rollbackApplied(ctx context.Context, b Lifecycle, failed *planned, cause error, written []applied, entries []*planned, j *Journal, journal string, out io.Writer) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var undone, stuck []string
	// A write whose answer was lost may have landed: the version after the
	// one validated, if nobody else wrote, is it.
	uncertain := ""
	if !errors.Is(cause, ErrCASConflict) && !errors.Is(cause, ErrPermission) && !errors.Is(cause, ErrUsage) && !errors.Is(cause, ErrTransit) {
		m, err := b.Metadata(rctx, failed.path)
		switch {
		case err != nil:
			uncertain = fmt.Sprintf("; whether %s was written is unknown (its answer was lost)", failed.path)
		case m.Current == failed.current+1:
			fmt.Fprintf(out, "written anyway %s: version %d (its answer was lost)\n", failed.label(), m.Current)
			written = append(written, applied{p: failed, version: m.Current, expBefore: formatExpiryIf(failed)})
		}
	}
	for _, a := range slices.Backward(written) {
		p := a.p
		fields := maps.Clone(p.old)
		for k, v := range fields {
			fields[k] = slices.Clone(v)
		}
		rec := JournalRecord{Op: JournalRollback, Path: p.path, VersionBefore: a.version}
		var err error
		if a.expBefore != "" {
			var cur time.Time
			if cur, err = b.ExpiresAt(rctx, p.path); err == nil {
				restoreExpiry(rctx, b, p.path, a.expBefore)
				rec.ExpiresAtBefore = formatExpiry(cur)
			}
		}
		var v int
		if err == nil {
			v, err = b.Write(rctx, p.path, fields, a.version)
		} else {
			securemem.WipeFields(fields)
		}
		if err != nil {
			stuck = append(stuck, fmt.Sprintf("%s (version %d; restore version %d)", p.path, a.version, p.current))
			fmt.Fprintf(out, "NOT rolled back %s: %s\n", p.label(), oneLineErr(err))
			continue
		}
		rec.VersionAfter = v
		jerr := j.Append(rec)
		undone = append(undone, p.path)
		if jerr != nil {
			fmt.Fprintf(out, "rolled back %s: version %d -> %d (the data of version %d), but the journal could not record it: %s\n", p.label(), a.version, v, p.current, oneLineErr(jerr))
			continue
		}
		fmt.Fprintf(out, "rolled back %s: version %d -> %d (the data of version %d)\n", p.label(), a.version, v, p.current)
	}
	notRun := len(entries) - failed.index - 1
	msg := fmt.Sprintf("apply failed at %s: %s; %d written entries rolled back", failed.label(), oneLineErr(cause), len(undone))
	if notRun > 0 {
		msg += fmt.Sprintf(", %d later entries not written", notRun)
	}
	if len(stuck) > 0 {
		msg += fmt.Sprintf("; %d could NOT be rolled back: %s", len(stuck), strings.Join(stuck, ", "))
	}
	msg += uncertain
	if len(stuck) > 0 || uncertain != "" {
		if journal != "" {
			msg += fmt.Sprintf(" (once Vault answers: credlet-agent creds rollback --journal %s)", journal)
		} else {
			msg += " (creds rollback PATH VERSION each)"
		}
	}
	return &kindError{kind: ErrApplyFailed, err: cause, msg: msg}
}

// printPlanned prints an entry's validation: what it would do, or its
// problems.
func printPlanned(w io.Writer, p *planned) {
	if len(p.problems) > 0 {
		fmt.Fprintf(w, "PROBLEM %s: %s\n", p.label(), strings.Join(p.problems, "; "))
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "ok %s: version %d -> %d; set %s", p.label(), p.current, p.current+1, strings.Join(sortedKeys(p.values), ", "))
	if p.opts.TransitKey != "" {
		enc := cmpOr(p.opts.TransitFields, sortedKeys(p.values))
		fmt.Fprintf(&sb, " (Transit %s", p.opts.TransitKey)
		if p.opts.Context != "" {
			fmt.Fprintf(&sb, ", context %s", p.opts.Context)
		}
		fmt.Fprintf(&sb, ": %s)", strings.Join(enc, ", "))
	}
	if len(p.kept) > 0 {
		fmt.Fprintf(&sb, "; keep %s", strings.Join(p.kept, ", "))
	}
	if p.expires != nil {
		fmt.Fprintf(&sb, "; expires_at %s -> %s", formatExpiry(p.expBefore), formatExpiry(*p.expires))
	}
	sb.WriteString("\n")
	_, _ = io.WriteString(w, sb.String())
}

// formatExpiryIf is the expiry an entry had before, when it changes it.
func formatExpiryIf(p *planned) string {
	if p.expires == nil {
		return ""
	}
	return formatExpiry(p.expBefore)
}
