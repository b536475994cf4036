package store

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// Set is one immutable version of a credential set. Field values are views
// into locked memory: valid until Release, never to be kept past it.
type Set struct {
	name      string
	version   int
	createdAt time.Time // when Vault created this version
	fetchedAt time.Time // when the agent read it
	expiresAt time.Time // zero: does not expire
	names     []string  // sorted
	keys      []string  // names[i] JSON-encoded with its colon: "name":
	offs      []int     // names[i]'s value is buf[offs[i]:offs[i+1]]
	buf       *securemem.Buffer

	// valuesVersion is the version that introduced these values: version,
	// unless the values equal the version before's (a Transit rewrap).
	valuesVersion int

	// rendered is the one rendering of this version readers share
	// (Rendered): locked memory, wiped and freed with buf.
	renderOnce sync.Once
	rendered   *securemem.Buffer
	renderErr  error

	// refs counts the store's own reference (while current or previous) plus
	// one per Acquire. At zero the buffer is wiped and freed.
	refs atomic.Int64
}

// Meta describes a version being committed.
type Meta struct {
	Version   int
	CreatedAt time.Time
	FetchedAt time.Time
	ExpiresAt time.Time // zero when the version does not expire (KV v2 static secrets)
}

// newSet copies fields into one locked buffer and wipes the originals.
func newSet(name string, meta Meta, fields map[string][]byte) (*Set, error) {
	s := &Set{name: name, version: meta.Version, createdAt: meta.CreatedAt, fetchedAt: meta.FetchedAt, expiresAt: meta.ExpiresAt, valuesVersion: meta.Version}
	total := 0
	for k, v := range fields {
		s.names = append(s.names, k)
		total += len(v)
	}
	slices.Sort(s.names)
	buf, err := securemem.New(max(total, 1))
	if err != nil {
		securemem.WipeFields(fields)
		return nil, err
	}
	s.buf = buf
	dst := buf.Bytes()
	s.offs = make([]int, 0, len(s.names)+1)
	off := 0
	for _, k := range s.names {
		s.offs = append(s.offs, off)
		off += copy(dst[off:], fields[k])
	}
	s.offs = append(s.offs, off)
	securemem.WipeFields(fields)
	s.keys = make([]string, len(s.names))
	for i, k := range s.names {
		var sb strings.Builder
		_ = WriteJSONString(&sb, []byte(k))
		sb.WriteByte(':')
		s.keys[i] = sb.String()
	}
	s.refs.Store(1)
	return s, nil
}

// Name is the credential set's delivery name.
func (s *Set) Name() string { return s.name }

// Version is the KV v2 version.
func (s *Set) Version() int { return s.version }

// CreatedAt is when this version was written to Vault.
func (s *Set) CreatedAt() time.Time { return s.createdAt }

// FetchedAt is when the agent read this version.
func (s *Set) FetchedAt() time.Time { return s.fetchedAt }

// ExpiresAt is when this version stops being valid; zero when it does not
// expire.
func (s *Set) ExpiresAt() time.Time { return s.expiresAt }

// ValuesVersion is the version that introduced this version's values: its
// own, unless its values equal the version before's (a Transit rewrap
// writes a new version with the same plaintext), then that one's. What
// tells an app "new credentials" (--notify) keys on it.
func (s *Set) ValuesVersion() int { return s.valuesVersion }

// Fields returns the field names, sorted (a copy the caller may keep).
func (s *Set) Fields() []string { return slices.Clone(s.names) }

// Len is the number of fields.
func (s *Set) Len() int { return len(s.names) }

// Field returns a view of one field's value.
func (s *Set) Field(name string) ([]byte, bool) {
	i, ok := slices.BinarySearch(s.names, name)
	if !ok {
		return nil, false
	}
	return s.buf.Bytes()[s.offs[i]:s.offs[i+1]:s.offs[i+1]], true
}

// Each calls fn for every field in name order, with a view of its value.
func (s *Set) Each(fn func(name string, value []byte)) {
	b := s.buf.Bytes()
	for i, k := range s.names {
		fn(k, b[s.offs[i]:s.offs[i+1]:s.offs[i+1]])
	}
}

// Release gives back a reference taken by Acquire.
func (s *Set) Release() {
	if s.refs.Add(-1) == 0 {
		s.buf.Free()
		s.rendered.Free()
	}
}

// Rendered returns this version rendered by render, which runs once per
// version: the first caller renders into a locked buffer it allocates and
// hands over, later callers share the result. The set owns the buffer from
// then on and wipes and frees it with the values. The slice is valid until
// the caller's Release. A set has one rendering: every caller must pass the
// same render. A failed render is not retried for this version.
func (s *Set) Rendered(render func(*Set) (*securemem.Buffer, error)) ([]byte, error) {
	s.renderOnce.Do(func() { s.rendered, s.renderErr = render(s) })
	if s.renderErr != nil {
		return nil, s.renderErr
	}
	return s.rendered.Bytes(), nil
}

// tryRef takes a reference unless the set is already being freed.
func (s *Set) tryRef() bool {
	for {
		r := s.refs.Load()
		if r <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// LogValue keeps values out of logs whatever a caller passes to slog.
func (s *Set) LogValue() slog.Value {
	return slog.GroupValue(slog.String("credential", s.name), slog.Int("version", s.version))
}

// String never prints a value.
func (s *Set) String() string { return "credential set " + s.name + " [REDACTED]" }

// GoString keeps %#v from printing the set's internals.
func (s *Set) GoString() string { return s.String() }
