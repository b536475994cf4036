package creds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// WriteOptions shape put and rotate.
type WriteOptions struct {
	// CAS is put's check-and-set: 0 (the default) creates, N writes on top
	// of version N.
	CAS int
	// Replace makes rotate drop the fields not given instead of keeping
	// them.
	Replace bool
	// TransitKey encrypts the given values with Transit before writing;
	// Context is the derived-key context. TransitFields limits encryption
	// to those fields (default: every given field).
	TransitKey    string
	Context       string
	TransitFields []string
}

// Result describes what a write did, without values.
type Result struct {
	Path      string
	From, To  int      // versions before and after (From 0: created)
	Changed   []string // fields given
	Kept      []string // fields carried over from the previous version
	Dropped   []string // fields of the previous version not carried over
	Encrypted []string // fields written as Transit ciphertext
	Revoked   bool     // the previous version had been revoked
}

func (o WriteOptions) validate(fields map[string][]byte) error {
	if o.TransitKey == "" {
		if o.Context != "" {
			return usage("--context needs --transit KEY")
		}
		if len(o.TransitFields) > 0 {
			return usage("--transit-fields needs --transit KEY")
		}
		return nil
	}
	for _, f := range o.TransitFields {
		if _, ok := fields[f]; !ok {
			return usage(fmt.Sprintf("--transit-fields names %q, which is not among the fields given (%s)", f, strings.Join(sortedKeys(fields), ", ")))
		}
	}
	return nil
}

// encrypt encrypts the chosen fields in place and returns their names.
func encrypt(ctx context.Context, b Backend, fields map[string][]byte, o WriteOptions) ([]string, error) {
	if o.TransitKey == "" {
		return nil, nil
	}
	names := o.TransitFields
	if len(names) == 0 {
		names = sortedKeys(fields)
	}
	sub := make(map[string][]byte, len(names))
	for _, n := range names {
		sub[n] = fields[n]
	}
	if err := b.Encrypt(ctx, o.TransitKey, o.Context, sub); err != nil {
		return nil, err
	}
	maps.Copy(fields, sub)
	slices.Sort(names)
	return names, nil
}

// Put writes a new version with check-and-set o.CAS (0: create). It
// wipes fields.
func Put(ctx context.Context, b Backend, path string, fields map[string][]byte, o WriteOptions) (Result, error) {
	defer securemem.WipeFields(fields)
	if err := o.validate(fields); err != nil {
		return Result{}, err
	}
	if o.Replace {
		return Result{}, usage("--replace applies to rotate; put writes exactly the fields given")
	}
	res := Result{Path: path, From: o.CAS, Changed: sortedKeys(fields)}
	enc, err := encrypt(ctx, b, fields, o)
	if err != nil {
		return Result{}, err
	}
	res.Encrypted = enc
	if res.To, err = b.Write(ctx, path, fields, o.CAS); err != nil {
		return Result{}, err
	}
	return res, nil
}

// transitPrefix marks Transit ciphertext in a stored value.
var transitPrefix = []byte("vault:v")

// Rotate writes the given fields as a new version on top of the current
// one (check-and-set), keeping the other fields unless o.Replace. A field
// that holds Transit ciphertext must be rotated with --transit, so a
// plaintext value never replaces an encrypted one by accident. It wipes
// fields.
func Rotate(ctx context.Context, b Backend, path string, fields map[string][]byte, o WriteOptions) (Result, error) {
	defer securemem.WipeFields(fields)
	if err := o.validate(fields); err != nil {
		return Result{}, err
	}
	m, err := b.Metadata(ctx, path)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Result{}, &kindError{kind: ErrNotFound, err: err, msg: err.Error() + "; rotate needs an existing set (use put to create it)"}
		}
		return Result{}, err
	}
	res := Result{Path: path, From: m.Current, Changed: sortedKeys(fields)}
	info, _ := m.Info(m.Current)
	res.Revoked = info.Gone()

	var old Secret
	if !info.Gone() {
		if old, err = b.Read(ctx, path, m.Current); err != nil {
			return Result{}, err
		}
		defer securemem.WipeFields(old.Fields)
		if old.Version != m.Current { // a write landed between the two reads
			return Result{}, casError(path, m.Current, old.Version)
		}
		encrypting := map[string]bool{}
		if o.TransitKey != "" {
			for _, f := range cmpOr(o.TransitFields, res.Changed) {
				encrypting[f] = true
			}
		}
		for _, f := range res.Changed {
			if bytes.HasPrefix(old.Fields[f], transitPrefix) && !encrypting[f] {
				return Result{}, usage(fmt.Sprintf("field %q holds Transit ciphertext in version %d: rotate it with --transit KEY (and --context CTX) so the new value is encrypted too", f, m.Current))
			}
		}
	}
	enc, err := encrypt(ctx, b, fields, o)
	if err != nil {
		return Result{}, err
	}
	res.Encrypted = enc
	for k, v := range old.Fields {
		if _, given := fields[k]; given {
			continue
		}
		if o.Replace {
			res.Dropped = append(res.Dropped, k)
			continue
		}
		fields[k] = bytes.Clone(v)
		res.Kept = append(res.Kept, k)
	}
	slices.Sort(res.Kept)
	slices.Sort(res.Dropped)
	if res.To, err = b.Write(ctx, path, fields, m.Current); err != nil {
		return Result{}, err
	}
	return res, nil
}

// Revoke soft-deletes the current version.
func Revoke(ctx context.Context, b Backend, path string) (Result, error) {
	v, err := b.Delete(ctx, path)
	if err != nil {
		return Result{}, err
	}
	return Result{Path: path, From: v, To: v, Revoked: true}, nil
}

// Rollback re-publishes version as the newest version, on top of the
// current one.
func Rollback(ctx context.Context, b Backend, path string, version int) (Result, error) {
	if version < 1 {
		return Result{}, usage(fmt.Sprintf("version %d: want a positive version number (see creds history %s)", version, path))
	}
	m, err := b.Metadata(ctx, path)
	if err != nil {
		return Result{}, err
	}
	info, ok := m.Info(version)
	switch {
	case !ok:
		return Result{}, newKind(ErrNotFound, fmt.Sprintf("%s has no version %d (kept: %s)", path, version, keptList(m)))
	case info.Destroyed:
		return Result{}, newKind(ErrDeleted, fmt.Sprintf("%s version %d was destroyed; pick another (creds history %s)", path, version, path))
	case info.Gone():
		return Result{}, newKind(ErrDeleted, fmt.Sprintf("%s version %d was revoked at %s; pick another (creds history %s)", path, version, info.DeletedAt.UTC().Format(time.RFC3339), path))
	case version == m.Current:
		return Result{}, usage(fmt.Sprintf("%s version %d is already the current version", path, version))
	}
	old, err := b.Read(ctx, path, version)
	if err != nil {
		return Result{}, err
	}
	res := Result{Path: path, From: m.Current, Changed: sortedKeys(old.Fields)}
	if res.To, err = b.Write(ctx, path, old.Fields, m.Current); err != nil {
		return Result{}, err
	}
	return res, nil
}

func keptList(m Metadata) string {
	var s []string
	for _, v := range m.Versions {
		s = append(s, fmt.Sprint(v.Version))
	}
	return strings.Join(s, ", ")
}

func sortedKeys(m map[string][]byte) []string { return slices.Sorted(maps.Keys(m)) }

func cmpOr(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}
