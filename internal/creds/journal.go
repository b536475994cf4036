package creds

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// JournalRecord is one line of an apply journal (JSON lines): a write
// apply is about to make (intent), one it made (apply), or one that undid
// it (rollback). It holds versions and times, never a value.
type JournalRecord struct {
	Time          time.Time `json:"ts"`
	Op            string    `json:"op"` // JournalIntent, JournalApply or JournalRollback
	Path          string    `json:"path"`
	VersionBefore int       `json:"version_before"`
	VersionAfter  int       `json:"version_after"` // 0 in an intent
	// ExpiresAtBefore is the set's custom metadata expires_at before the
	// write ("none" when it had none), when the write changed it.
	ExpiresAtBefore string `json:"expires_at_before,omitempty"`
}

// Journal record ops.
const (
	JournalIntent   = "intent"
	JournalApply    = "apply"
	JournalRollback = "rollback"
)

// Journal appends records to a file, each synced to disk before the next
// write to Vault. A nil *Journal records nothing.
type Journal struct {
	f    *os.File
	name string
	now  func() time.Time
}

// CreateJournal creates a new journal file (0600); an existing non-empty
// file is refused, so one journal is one apply.
func CreateJournal(name string, now func() time.Time) (*Journal, error) {
	if fi, err := os.Stat(name); err == nil && fi.Size() > 0 {
		return nil, usage(fmt.Sprintf("--journal %s already holds a journal: give a new file (a journal records one apply; creds rollback --journal %s undoes that one)", name, name))
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, usage(fmt.Sprintf("--journal: %v", err))
	}
	return &Journal{f: f, name: name, now: now}, nil
}

// appendJournal opens an existing journal to add rollback records.
func appendJournal(name string, now func() time.Time) (*Journal, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", name, err)
	}
	return &Journal{f: f, name: name, now: now}, nil
}

// Append writes one record and syncs it.
func (j *Journal) Append(r JournalRecord) error {
	if j == nil {
		return nil
	}
	r.Time = j.now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal %s: %w", j.name, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal %s: %w", j.name, err)
	}
	return nil
}

// Close closes the file.
func (j *Journal) Close() error {
	if j == nil {
		return nil
	}
	return j.f.Close()
}

// ReadJournal reads every record, strictly: a line that does not parse is
// an error naming it.
func ReadJournal(name string) ([]JournalRecord, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, usage(fmt.Sprintf("--journal: %v", err))
	}
	defer f.Close()
	var out []JournalRecord
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r JournalRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("journal %s line %d: %v", name, n, err)
		}
		valid := r.Path != "" && r.VersionBefore >= 0 && ((r.Op == JournalIntent && r.VersionAfter == 0) ||
			((r.Op == JournalApply || r.Op == JournalRollback) && r.VersionAfter > 0))
		if !valid {
			return nil, fmt.Errorf("journal %s line %d: not a journal record (want op intent|apply|rollback, path, version_before, version_after)", name, n)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("journal %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, usage(fmt.Sprintf("journal %s has no records: nothing to roll back", name))
	}
	return out, nil
}

// journalPath is one path's history in a journal.
type journalPath struct {
	path      string
	restore   int    // the version before the first apply: its data is restored
	expect    int    // the version the journal left the path at
	expBefore string // expires_at before the first apply that changed it ("": unchanged)
	undone    bool   // the last record is a rollback
	pending   bool   // the last record is an intent: the write's outcome is unknown
	intentAt  time.Time
}

// intentSkew is how much earlier than its intent record a version may have
// been created and still count as the write the intent announced (clocks
// of this host and Vault's differ a little).
const intentSkew = 5 * time.Second

// ErrRollbackRefused is a journal rollback that left some paths alone
// because they changed since, or failed; each is named in the output.
var ErrRollbackRefused = errors.New("rollback incomplete")

// RollbackJournal restores every path of a journal to its data before the
// apply (as a new version, check-and-set on the version the journal left
// it at), newest first, and appends a rollback record per path. A path
// written since is refused and named; a path already rolled back is
// skipped. With dryRun it only says what it would do.
func RollbackJournal(ctx context.Context, b Backend, name string, dryRun bool, now func() time.Time, out io.Writer) error {
	lb, err := lifecycle(b, "creds rollback --journal")
	if err != nil {
		return err
	}
	recs, err := ReadJournal(name)
	if err != nil {
		return err
	}
	var order []*journalPath
	byPath := map[string]*journalPath{}
	for _, r := range recs {
		jp := byPath[r.Path]
		if jp == nil {
			jp = &journalPath{path: r.Path, restore: r.VersionBefore}
			byPath[r.Path] = jp
			order = append(order, jp)
		}
		jp.pending = r.Op == JournalIntent
		if jp.pending {
			jp.intentAt = r.Time
			continue
		}
		jp.expect, jp.undone = r.VersionAfter, r.Op == JournalRollback
		if r.Op == JournalApply && r.ExpiresAtBefore != "" && jp.expBefore == "" {
			jp.expBefore = r.ExpiresAtBefore
		}
	}
	var j *Journal
	if !dryRun {
		if j, err = appendJournal(name, now); err != nil {
			return err
		}
		defer j.Close()
	}
	var refused, done int
	for _, jp := range slices.Backward(order) {
		if jp.undone {
			fmt.Fprintf(out, "already rolled back %s: version %d holds the data of version %d\n", jp.path, jp.expect, jp.restore)
			continue
		}
		v, err := rollbackPath(ctx, lb, jp, dryRun, j)
		switch {
		case errors.Is(err, errNeverWritten):
			fmt.Fprintf(out, "not written %s: still at version %d (the apply stopped before its write landed)\n", jp.path, jp.restore)
		case err != nil:
			refused++
			fmt.Fprintf(out, "REFUSED %s: %s\n", jp.path, oneLineErr(err))
		case dryRun:
			done++
			fmt.Fprintf(out, "would roll back %s: version %d -> the data of version %d\n", jp.path, jp.expect, jp.restore)
		default:
			done++
			fmt.Fprintf(out, "rolled back %s: version %d -> %d (the data of version %d)\n", jp.path, jp.expect, v, jp.restore)
		}
	}
	verb := "rolled back"
	if dryRun {
		verb = "to roll back (dry run: nothing written)"
	}
	fmt.Fprintf(out, "journal %s: %d paths %s, %d refused\n", name, done, verb, refused)
	if refused > 0 {
		return &kindError{kind: ErrRollbackRefused, msg: fmt.Sprintf("rollback --journal %s: %d paths refused (named above); the others are restored", name, refused)}
	}
	return nil
}

// errNeverWritten is a path whose journal ends with an intent whose write
// never landed: nothing to roll back.
var errNeverWritten = errors.New("never written")

// rollbackPath restores one path, or says why not.
func rollbackPath(ctx context.Context, b Lifecycle, jp *journalPath, dryRun bool, j *Journal) (int, error) {
	if jp.restore < 1 {
		return 0, fmt.Errorf("the journal has no version to restore (version_before %d)", jp.restore)
	}
	m, err := b.Metadata(ctx, jp.path)
	if err != nil {
		return 0, err
	}
	if jp.pending && jp.expect == 0 {
		// The apply announced a write and lost its answer: the version
		// right after version_before, created after the intent, is it.
		info, ok := m.Info(jp.restore + 1)
		switch {
		case m.Current == jp.restore:
			return 0, errNeverWritten
		case m.Current == jp.restore+1 && ok && !info.CreatedAt.Before(jp.intentAt.Add(-intentSkew)):
			jp.expect = m.Current
		}
	}
	if m.Current != jp.expect {
		when := ""
		if info, ok := m.Info(m.Current); ok {
			when = " at " + info.CreatedAt.UTC().Format(time.RFC3339)
		}
		return 0, fmt.Errorf("changed since the journal: now at version %d (written%s), the journal left it at version %d; look at creds history %s and roll it back by hand if wanted (creds rollback %s %d)",
			m.Current, when, jp.expect, jp.path, jp.path, jp.restore)
	}
	old, err := b.Read(ctx, jp.path, jp.restore)
	if err != nil {
		return 0, fmt.Errorf("version %d cannot be read back: %s", jp.restore, oneLineErr(err))
	}
	if dryRun {
		securemem.WipeFields(old.Fields)
		return 0, nil
	}
	rec := JournalRecord{Op: JournalRollback, Path: jp.path, VersionBefore: jp.expect}
	if jp.expBefore != "" {
		t := time.Time{}
		if jp.expBefore != "none" {
			if t, err = time.Parse(time.RFC3339, jp.expBefore); err != nil {
				securemem.WipeFields(old.Fields)
				return 0, fmt.Errorf("journal expires_at_before %q: %v", jp.expBefore, err)
			}
		}
		cur, err := b.ExpiresAt(ctx, jp.path)
		if err != nil {
			securemem.WipeFields(old.Fields)
			return 0, err
		}
		if err := b.SetExpiresAt(ctx, jp.path, t); err != nil {
			securemem.WipeFields(old.Fields)
			return 0, err
		}
		rec.ExpiresAtBefore = formatExpiry(cur)
	}
	v, err := b.Write(ctx, jp.path, old.Fields, jp.expect) // wipes old.Fields
	if err != nil {
		if rec.ExpiresAtBefore != "" {
			restoreExpiry(ctx, b, jp.path, rec.ExpiresAtBefore)
		}
		return 0, err
	}
	rec.VersionAfter = v
	if err := j.Append(rec); err != nil {
		return v, fmt.Errorf("restored as version %d, but the journal could not record it: %w", v, err)
	}
	return v, nil
}

// restoreExpiry puts back an expires_at ("none": no expiry) after a failed
// write, as well as it can: the write's error is what gets reported.
func restoreExpiry(ctx context.Context, b Lifecycle, path, before string) {
	t, err := time.Parse(time.RFC3339, before)
	if err != nil {
		t = time.Time{}
	}
	_ = b.SetExpiresAt(ctx, path, t)
}
