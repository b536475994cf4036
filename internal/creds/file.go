package creds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/securemem"
)

// File is the embedded encrypted file backend (--source file:PATH).
type File struct {
	path string
	key  *filesource.Key
	now  func() time.Time
}

// NewFile opens the backend for the credentials file at path with the
// master key in keyFile. The file need not exist yet: put creates it.
func NewFile(path, keyFile string) (*File, error) {
	if path == "" {
		return nil, usage("--source file:PATH needs a path")
	}
	if keyFile == "" {
		return nil, usage("--master-key-file is required with --source file:PATH")
	}
	k, err := filesource.LoadKey(keyFile)
	if err != nil {
		return nil, usage(err.Error())
	}
	return &File{path: path, key: k, now: time.Now}, nil
}

// Describe names the backend.
func (f *File) Describe() string { return "credentials file " + f.path }

// Close wipes the master key.
func (f *File) Close() { f.key.Close() }

// fileErr maps filesource errors to this package's kinds, keeping the
// message.
func (f *File) fileErr(err error) error {
	kinds := []struct{ from, to error }{
		{filesource.ErrCASConflict, ErrCASConflict},
		{filesource.ErrDeleted, ErrDeleted},
		{filesource.ErrNotFound, ErrNotFound},
		{filesource.ErrNoVersion, ErrNotFound},
		{filesource.ErrInvalid, ErrUsage},
	}
	if errors.Is(err, filesource.ErrNoFile) {
		return &kindError{kind: ErrNotFound, err: err, msg: fmt.Sprintf("credentials file %s does not exist (creds put creates it)", f.path)}
	}
	for _, k := range kinds {
		if errors.Is(err, k.from) {
			msg := err.Error()
			return &kindError{kind: k.to, err: err, msg: msg}
		}
	}
	return err
}

func (f *File) read() (*filesource.Document, error) {
	d, err := filesource.Read(f.path, f.key)
	if err != nil {
		return nil, f.fileErr(err)
	}
	return d, nil
}

// Metadata lists the set's versions.
func (f *File) Metadata(_ context.Context, path string) (Metadata, error) {
	d, err := f.read()
	if err != nil {
		return Metadata{}, err
	}
	defer d.Wipe()
	revs, err := d.History(path)
	if err != nil {
		return Metadata{}, f.fileErr(err)
	}
	m := Metadata{Current: revs[0].Version}
	for _, r := range revs {
		m.Versions = append(m.Versions, VersionInfo{Version: r.Version, CreatedAt: r.CreatedAt, DeletedAt: r.DeletedAt})
	}
	return m, nil
}

// Read returns a copy of a version's fields.
func (f *File) Read(_ context.Context, path string, version int) (Secret, error) {
	d, err := f.read()
	if err != nil {
		return Secret{}, err
	}
	defer d.Wipe()
	r, err := d.Get(path, version)
	if err != nil {
		return Secret{}, f.fileErr(err)
	}
	s := Secret{Version: r.Version, CreatedAt: r.CreatedAt, Fields: make(map[string][]byte, len(r.Fields))}
	for k, v := range r.Fields {
		s.Fields[k] = slices.Clone(v)
	}
	return s, nil
}

// Write stores a new version under the file's lock with check-and-set.
func (f *File) Write(ctx context.Context, path string, fields map[string][]byte, cas int) (int, error) {
	var v int
	err := filesource.Edit(ctx, f.path, f.key, func(d *filesource.Document) error {
		var err error
		v, err = d.Put(path, fields, cas, f.now()) // the document owns fields now; Edit wipes it
		return err
	})
	if err != nil {
		securemem.WipeFields(fields)
		return 0, f.fileErr(err)
	}
	return v, nil
}

// Delete soft-deletes the current version.
func (f *File) Delete(ctx context.Context, path string) (int, error) {
	d, err := f.read() // a missing file is "not found", not created
	if err != nil {
		return 0, err
	}
	d.Wipe()
	var v int
	err = filesource.Edit(ctx, f.path, f.key, func(d *filesource.Document) error {
		var err error
		v, err = d.Delete(path, f.now())
		return err
	})
	if err != nil {
		return 0, f.fileErr(err)
	}
	return v, nil
}

// List lists the names under prefix.
func (f *File) List(_ context.Context, prefix string) ([]string, error) {
	if strings.Trim(prefix, "/") == "" {
		return nil, usage("list needs a prefix: MOUNT or MOUNT/PATH, e.g. secret/partners")
	}
	d, err := f.read()
	if err != nil {
		return nil, err
	}
	defer d.Wipe()
	return d.List(prefix), nil
}

// Encrypt is Vault-only.
func (f *File) Encrypt(context.Context, string, string, map[string][]byte) error {
	return usage("--transit applies to --source vault only; the file source encrypts the whole file with the master key")
}
