package filesource

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/vault"
)

// MaxVersions is how many versions of a set the file keeps (current plus
// history), like KV v2's default max_versions.
const MaxVersions = 10

// Errors of the document operations. The kinds a Vault backend shares are
// package vault's own, so callers match both backends the same way.
var (
	ErrNotFound    = vault.ErrNotFound
	ErrDeleted     = vault.ErrDeleted
	ErrNoVersion   = errors.New("no such version")
	ErrCASConflict = vault.ErrCASConflict
	ErrInvalid     = errors.New("invalid input")
)

// CASError reports a write whose expected version was not the current one.
type CASError = vault.CASError

// docError is a one-line message that errors.Is matches to its kind.
type docError struct {
	kind error
	msg  string
}

func (e *docError) Error() string        { return e.msg }
func (e *docError) Is(target error) bool { return target == e.kind }

func docErr(kind error, format string, args ...any) error {
	return &docError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Rev is one version of a credential set. Field values are the secret
// bytes; JSON carries them as base64.
type Rev struct {
	Version   int               `json:"version"`
	CreatedAt time.Time         `json:"created_at"`
	DeletedAt time.Time         `json:"deleted_at,omitzero"`
	Fields    map[string][]byte `json:"fields,omitempty"`
}

// Deleted reports whether the version was revoked.
func (r Rev) Deleted() bool { return !r.DeletedAt.IsZero() }

// Entry is a credential set: its current version and older ones, newest
// first.
type Entry struct {
	Rev
	History []Rev `json:"history,omitempty"`
}

// Document is the decrypted file.
type Document struct {
	Credentials map[string]*Entry `json:"credentials"`
}

var fieldRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ValidateField checks a field name (the same rule as --credential's
// fields= option).
func ValidateField(name string) error {
	if !fieldRE.MatchString(name) {
		return docErr(ErrInvalid, "field name %q: allowed letters, digits, '.', '_', '-', not starting with '.' (1-128)", name)
	}
	return nil
}

// CleanPath validates a KV path ("secret/demo/exchange" or
// "secret/data/demo/exchange") and returns it as MOUNT/PATH.
func CleanPath(p string) (string, error) {
	mount, rest, err := credspec.SplitKVPath(p)
	if err != nil {
		return "", &docError{kind: ErrInvalid, msg: credspec.ProblemOf(err)}
	}
	return mount + "/" + rest, nil
}

func (d *Document) entry(path string) (string, *Entry, error) {
	p, err := CleanPath(path)
	if err != nil {
		return "", nil, err
	}
	e := d.Credentials[p]
	if e == nil {
		return p, nil, docErr(ErrNotFound, "%s does not exist in the credentials file", p)
	}
	return p, e, nil
}

// Put writes fields as a new version of path and returns its number. cas
// is the check-and-set: -1 writes unconditionally, 0 only if the set does
// not exist, N only if N is the current version. Put takes ownership of
// the field slices.
func (d *Document) Put(path string, fields map[string][]byte, cas int, now time.Time) (int, error) {
	p, err := CleanPath(path)
	if err != nil {
		return 0, err
	}
	if len(fields) == 0 {
		return 0, docErr(ErrInvalid, "%s: at least one field is required", p)
	}
	for k := range fields {
		if err := ValidateField(k); err != nil {
			return 0, err
		}
	}
	if d.Credentials == nil {
		d.Credentials = map[string]*Entry{}
	}
	e := d.Credentials[p]
	have := 0
	if e != nil {
		have = e.Version
	}
	if cas >= 0 && cas != have {
		return 0, &CASError{Path: p, Want: cas, Have: have}
	}
	if e == nil {
		e = &Entry{}
		d.Credentials[p] = e
	} else {
		e.History = append([]Rev{e.Rev}, e.History...)
		for len(e.History) > MaxVersions-1 {
			securemem.WipeFields(e.History[len(e.History)-1].Fields)
			e.History = e.History[:len(e.History)-1]
		}
	}
	e.Rev = Rev{Version: have + 1, CreatedAt: now.UTC(), Fields: fields}
	return e.Version, nil
}

// Get returns a version of path (0: the current one). A revoked version
// is an error wrapping ErrDeleted. The returned fields are the document's:
// copy them before the document is wiped.
func (d *Document) Get(path string, version int) (Rev, error) {
	p, e, err := d.entry(path)
	if err != nil {
		return Rev{}, err
	}
	r, ok := e.find(version)
	if !ok {
		return Rev{}, docErr(ErrNoVersion, "%s has no version %d (kept: %s)", p, version, e.kept())
	}
	if r.Deleted() {
		return Rev{}, docErr(ErrDeleted, "%s version %d was revoked at %s", p, r.Version, r.DeletedAt.UTC().Format(time.RFC3339))
	}
	return *r, nil
}

func (e *Entry) find(version int) (*Rev, bool) {
	if version == 0 || version == e.Version {
		return &e.Rev, true
	}
	for i := range e.History {
		if e.History[i].Version == version {
			return &e.History[i], true
		}
	}
	return nil, false
}

func (e *Entry) kept() string {
	vs := []string{fmt.Sprint(e.Version)}
	for _, r := range e.History {
		vs = append(vs, fmt.Sprint(r.Version))
	}
	return strings.Join(vs, ", ")
}

// Delete soft-deletes (revokes) the current version of path and returns
// its number. The set keeps its version number; the next Put follows it.
func (d *Document) Delete(path string, now time.Time) (int, error) {
	p, e, err := d.entry(path)
	if err != nil {
		return 0, err
	}
	if e.Deleted() {
		return 0, docErr(ErrDeleted, "%s version %d is already revoked; write a new one with creds rotate", p, e.Version)
	}
	e.DeletedAt = now.UTC()
	return e.Version, nil
}

// Rollback re-publishes version as the newest version of path, on top of
// the current version cas (-1: whatever is current).
func (d *Document) Rollback(path string, version, cas int, now time.Time) (int, error) {
	r, err := d.Get(path, version)
	if err != nil {
		return 0, err
	}
	fields := make(map[string][]byte, len(r.Fields))
	for k, v := range r.Fields {
		fields[k] = slices.Clone(v)
	}
	if cas < 0 {
		_, e, _ := d.entry(path)
		cas = e.Version
	}
	return d.Put(path, fields, cas, now)
}

// History returns the versions of path, newest first, without fields.
func (d *Document) History(path string) ([]Rev, error) {
	_, e, err := d.entry(path)
	if err != nil {
		return nil, err
	}
	out := []Rev{{Version: e.Version, CreatedAt: e.CreatedAt, DeletedAt: e.DeletedAt}}
	for _, r := range e.History {
		out = append(out, Rev{Version: r.Version, CreatedAt: r.CreatedAt, DeletedAt: r.DeletedAt})
	}
	return out, nil
}

// List returns the keys directly under prefix like a KV LIST: set names,
// and folder names ending in "/". prefix is a mount ("secret") or a path
// under one ("secret/partners/").
func (d *Document) List(prefix string) []string {
	prefix = strings.Trim(prefix, "/")
	if m, rest, ok := strings.Cut(prefix, "/"); ok {
		if after, ok := strings.CutPrefix(rest, "data/"); ok {
			prefix = m + "/" + after
		} else if rest == "data" {
			prefix = m
		}
	}
	seen := map[string]bool{}
	for p := range d.Credentials {
		rest, ok := strings.CutPrefix(p, prefix+"/")
		if !ok {
			continue
		}
		if head, _, more := strings.Cut(rest, "/"); more {
			seen[head+"/"] = true
		} else {
			seen[rest] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// Wipe zeroes every field value the document holds.
func (d *Document) Wipe() {
	if d == nil {
		return
	}
	for _, e := range d.Credentials {
		securemem.WipeFields(e.Fields)
		for _, r := range e.History {
			securemem.WipeFields(r.Fields)
		}
	}
}
