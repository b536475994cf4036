package creds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/securemem"
)

// Plan is a bulk rotation: creds apply PLAN. Values come only from files
// ("@/path"), so a plan holds no secret.
//
//	rotations:
//	- path: secret/partners/acme/zerodha
//	  transit: credlet-partners     # optional
//	  context: acme                 # optional
//	  transit-fields: [api_secret]  # optional; default: every field given
//	  expires-at: 2026-12-08T03:30:00Z  # optional; "none" clears it
//	  fields:
//	    api_key: "@/secure/new-key"
//	    api_secret: "@/secure/new-secret"
type Plan struct {
	Rotations []PlanEntry `json:"rotations"`
}

// PlanEntry is one set to rotate: the given fields replace the current
// version's, the others are kept (as creds rotate does).
type PlanEntry struct {
	Path          string            `json:"path"`
	Transit       string            `json:"transit,omitempty"`
	Context       string            `json:"context,omitempty"`
	TransitFields []string          `json:"transit-fields,omitempty"`
	ExpiresAt     string            `json:"expires-at,omitempty"`
	Fields        map[string]string `json:"fields"`
}

// maxPlan bounds a plan file.
const maxPlan = 4 << 20

// LoadPlan reads and strictly decodes a plan: an unknown or duplicated key
// is an error.
func LoadPlan(file string) (Plan, error) {
	f, err := os.Open(file)
	if err != nil {
		return Plan{}, usage(fmt.Sprintf("plan: %v", err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPlan+1))
	if err != nil {
		return Plan{}, usage(fmt.Sprintf("plan %s: %v", file, err))
	}
	if len(b) > maxPlan {
		return Plan{}, usage(fmt.Sprintf("plan %s: longer than %d bytes", file, maxPlan))
	}
	var p Plan
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return Plan{}, usage(fmt.Sprintf("plan %s: %s (allowed keys: rotations; per entry: path, transit, context, transit-fields, expires-at, fields)", file, yamlProblem(err)))
	}
	if len(p.Rotations) == 0 {
		return Plan{}, usage(fmt.Sprintf("plan %s: no rotations (want rotations: [{path, fields: {name: \"@file\"}}, ...])", file))
	}
	return p, nil
}

// yamlProblem trims the decoder's wrapping off a YAML error.
func yamlProblem(err error) string {
	s := oneLineErr(err)
	for _, pre := range []string{"error unmarshaling JSON: while decoding JSON: ", "error converting YAML to JSON: ", "error unmarshaling JSON: "} {
		s = strings.TrimPrefix(s, pre)
	}
	return s
}

// planned is a validated entry, ready to write.
type planned struct {
	index     int
	entry     PlanEntry
	path      string            // MOUNT/PATH
	values    map[string][]byte // from the @files; wiped at the end
	opts      WriteOptions
	current   int               // the version the write follows (check-and-set)
	old       map[string][]byte // the current version's values (kept fields, rollback); wiped at the end
	kept      []string
	expires   *time.Time // set when the entry gives expires-at (zero: none)
	expBefore time.Time  // the set's expires_at before
	problems  []string
}

func (p *planned) label() string {
	if p.path != "" {
		return fmt.Sprintf("rotations[%d] %s", p.index, p.path)
	}
	return fmt.Sprintf("rotations[%d]", p.index)
}

func (p *planned) wipe() {
	securemem.WipeFields(p.values)
	securemem.WipeFields(p.old)
}

// validatePlan checks every entry: the path and its mount exist, the token
// may read and write it (sys/capabilities-self), each Transit key and
// context encrypts, each value file is readable, non-empty UTF-8, no path
// is given twice. Relative @files are read from dir. It returns every
// entry with its problems; the caller wipes them.
func validatePlan(ctx context.Context, b Lifecycle, plan Plan, dir string, now time.Time) []*planned {
	out := make([]*planned, len(plan.Rotations))
	seen := map[string]int{}
	transitOK := map[[2]string]error{}
	for i, e := range plan.Rotations {
		p := &planned{index: i, entry: e}
		out[i] = p
		bad := func(format string, args ...any) { p.problems = append(p.problems, fmt.Sprintf(format, args...)) }

		if e.Path == "" {
			bad("path is required")
		} else if c, err := cleanPath(e.Path); err != nil {
			bad("path: %s", strings.TrimPrefix(err.Error(), "invalid: "))
		} else {
			p.path = c
			if j, dup := seen[c]; dup {
				bad("path given twice (also rotations[%d]): one entry per set", j)
			}
			seen[c] = i
		}
		p.readValues(dir, bad)
		p.opts = WriteOptions{TransitKey: e.Transit, Context: e.Context, TransitFields: e.TransitFields}
		switch {
		case e.Transit == "" && e.Context != "":
			bad("context needs transit")
		case e.Transit == "" && len(e.TransitFields) > 0:
			bad("transit-fields needs transit")
		case e.Transit != "":
			if err := validKeyName(e.Transit); err != nil {
				bad("transit: %s", strings.TrimPrefix(err.Error(), "transit key "))
			}
		}
		for _, f := range e.TransitFields {
			if _, ok := e.Fields[f]; !ok {
				bad("transit-fields names %q, which is not among the fields given", f)
			}
		}
		if e.ExpiresAt != "" {
			t, err := ParseExpiresAt(e.ExpiresAt, now)
			if err != nil {
				bad("expires-at %v", err)
			} else {
				p.expires = &t
			}
		}
		if p.path == "" {
			continue
		}
		p.checkVault(ctx, b, bad)
		if e.Transit != "" && validKeyName(e.Transit) == nil {
			pair := [2]string{e.Transit, e.Context}
			err, done := transitOK[pair]
			if !done {
				// One encryption of a fixed, non-secret text proves the key
				// exists, the context fits it and the token may encrypt.
				err = b.Encrypt(ctx, e.Transit, e.Context, map[string][]byte{"check": []byte("credlet apply: validation")})
				transitOK[pair] = err
			}
			if err != nil {
				bad("transit %s (context %q): %s", e.Transit, e.Context, oneLineErr(err))
			}
		}
	}
	return out
}

// readValues reads every field's @file.
func (p *planned) readValues(dir string, bad func(string, ...any)) {
	p.values = map[string][]byte{}
	if len(p.entry.Fields) == 0 {
		bad("fields: at least one field is required (name: \"@/path/to/file\")")
		return
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range p.entry.Fields {
			if !yield(k) {
				return
			}
		}
	}) {
		spec := p.entry.Fields[name]
		if err := filesource.ValidateField(name); err != nil {
			bad("fields: %s", strings.TrimPrefix(err.Error(), "invalid: "))
			continue
		}
		file, ok := strings.CutPrefix(spec, "@")
		if !ok || file == "" {
			// The value is not echoed: it may be a secret pasted by mistake.
			bad("fields.%s: a plan holds no secret: give the value's file as \"@/path/to/file\"", name)
			continue
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		v, err := readFileValue(file)
		switch {
		case err != nil:
			bad("fields.%s: %s", name, oneLineErr(err))
		case len(v) == 0:
			bad("fields.%s: %s is empty", name, file)
		case !utf8.Valid(v):
			securemem.WipeFields(map[string][]byte{name: v})
			bad("fields.%s: %s is not UTF-8 text; KV v2 stores strings (base64-encode binary values first)", name, file)
		default:
			p.values[name] = v
		}
	}
}

// checkVault checks the set in Vault: it exists with a live current
// version, the token may read and write it, and a field holding ciphertext
// is not replaced by plaintext. It keeps the current values for the write
// and for a rollback.
func (p *planned) checkVault(ctx context.Context, b Lifecycle, bad func(string, ...any)) {
	m, err := b.Metadata(ctx, p.path)
	switch {
	case errors.Is(err, ErrNotFound):
		bad("does not exist on %s (apply rotates existing sets; create it with creds put)", b.Describe())
		return
	case err != nil:
		bad("%s", oneLineErr(err))
		return
	}
	p.current = m.Current
	if info, ok := m.Info(m.Current); !ok || info.Gone() {
		bad("current version %d is revoked or destroyed: apply needs a live version to roll back to (rotate it on its own with creds rotate)", m.Current)
		return
	}
	caps, err := b.Capabilities(ctx, p.path)
	if err != nil {
		bad("capabilities: %s", oneLineErr(err))
		return
	}
	var missing []string
	for _, need := range []struct {
		caps []string
		op   string
		what string
	}{
		{caps.Data, "update", "write"},
		{caps.Data, "read", "read (to keep the fields not given)"},
	} {
		if !can(need.caps, need.op) {
			missing = append(missing, need.what)
		}
	}
	if p.expires != nil && !can(caps.Metadata, "update") {
		missing = append(missing, "update its metadata (expires-at)")
	}
	if len(missing) > 0 {
		bad("the token may not %s it (capabilities on the data path: %s; check: vault token capabilities %s)",
			strings.Join(missing, " or "), capList(caps.Data), p.path)
		return
	}
	exp, err := b.ExpiresAt(ctx, p.path)
	if err != nil {
		bad("%s", oneLineErr(err))
		return
	}
	p.expBefore = exp
	if !exp.IsZero() && p.expires == nil {
		bad("the set carries expires_at %s: give expires-at for the new value (or \"none\")", formatExpiry(exp))
	}
	s, err := b.Read(ctx, p.path, m.Current)
	if err != nil {
		bad("%s", oneLineErr(err))
		return
	}
	p.old = s.Fields
	encrypting := map[string]bool{}
	if p.entry.Transit != "" {
		for _, f := range cmpOr(p.entry.TransitFields, sortedKeys(p.values)) {
			encrypting[f] = true
		}
	}
	for f := range p.entry.Fields {
		if bytes.HasPrefix(p.old[f], transitPrefix) && !encrypting[f] {
			bad("field %q holds Transit ciphertext in version %d: give transit (and context) so the new value is encrypted too", f, m.Current)
		}
	}
	for k := range p.old {
		if _, given := p.entry.Fields[k]; !given {
			p.kept = append(p.kept, k)
		}
	}
	slices.Sort(p.kept)
}

func capList(c []string) string {
	if len(c) == 0 {
		return "none"
	}
	return strings.Join(c, ", ")
}
