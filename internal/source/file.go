package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/store"
)

// File serves credential sets from the embedded encrypted file (package
// filesource, local development) through the same pipeline as Vault: one
// backend that watches one file for every set.
type File struct {
	path  string
	key   *filesource.Key
	creds []credspec.Credential
	o     Options
	pipes map[string]*pipeline // per set; owned by the goroutine in Run or Once
	seen  fileID               // the file as last read (decoded or not)
	bad   bool                 // the file at seen did not open: not tried again until it changes
}

// fileID tells whether the file changed since it was last read.
type fileID struct {
	ino, size int64
	mtime     time.Time
	ok        bool
}

// NewFile loads the master key and prepares the source for the file at
// path. creds are the sets to serve, each read from its KVPath() in the
// file; empty: every set the file defines (filesource.Names). Every set
// must be declared in st. opts.Refresh is the poll that backs up the
// fsnotify watch.
func NewFile(path, keyFile string, creds []credspec.Credential, st *store.Store, opts Options) (*File, error) {
	key, err := filesource.LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		if creds, err = filesource.Names(path, keyFile); err != nil {
			key.Close()
			return nil, err
		}
	}
	declared := map[string]bool{}
	for _, n := range st.Names() {
		declared[n] = true
	}
	o := opts.withDefaults()
	o.Logger = o.Logger.With("file", path)
	f := &File{path: path, key: key, creds: creds, o: o, pipes: map[string]*pipeline{}}
	for _, c := range creds {
		if !declared[c.Name] {
			key.Close()
			return nil, fmt.Errorf("file source: credential %q is not declared in the store", c.Name)
		}
		f.pipes[c.Name] = newPipeline(c, st, o, "file")
	}
	return f, nil
}

// Credentials returns the sets this source serves.
func (f *File) Credentials() []credspec.Credential { return f.creds }

// Close wipes the master key. The source must not run afterwards.
func (f *File) Close() { f.key.Close() }

// Once reads the file and commits every set whose version changed. It
// returns an error naming each required set that has no version yet.
func (f *File) Once(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.check(ctx, true)
	var errs []error
	for _, c := range f.creds {
		if p := f.pipes[c.Name]; p.Served() == 0 && !c.Optional {
			errs = append(errs, fmt.Errorf("credential %s: %s", c.Name, p.lastMsg))
		}
	}
	return errors.Join(errs...)
}

// Run watches the file (fsnotify on its directory, so an atomic rename is
// seen, plus a poll every Refresh) and commits each change until ctx ends.
// It returns nil when ctx is cancelled.
func (f *File) Run(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var werrs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(f.path)); err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		f.o.Logger.Warn("cannot watch the credentials file; polling only", "error", err.Error(), "refresh", f.o.Refresh.String())
	} else {
		defer w.Close()
		events, werrs = w.Events, w.Errors
	}
	base := filepath.Base(f.path)
	f.check(ctx, true)
	for {
		t := f.o.Clock.NewTimer(f.o.Refresh)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case ev, ok := <-events:
			t.Stop()
			if !ok {
				events = nil
				continue
			}
			// Our file: decode it. Anything else in the directory (a
			// ..data swap behind a symlink): decode only if it changed.
			f.check(ctx, filepath.Base(ev.Name) == base)
		case err, ok := <-werrs:
			t.Stop()
			if !ok {
				werrs = nil
				continue
			}
			f.o.Logger.Warn("watching the credentials file", "error", err.Error())
		case <-t.C():
			f.check(ctx, false)
		}
	}
}

// check reads the file if force or if it changed, and hands each set's
// current version to its pipeline.
func (f *File) check(ctx context.Context, force bool) {
	now := f.o.Clock.Now()
	id, err := stat(f.path)
	if err != nil {
		f.all(func(p *pipeline) error {
			return p.CheckFailed(fmt.Errorf("credentials file %s: %w", f.path, errors.Unwrap(err)))
		})
		f.seen = fileID{}
		return
	}
	if id == f.seen && (!force || f.bad) {
		for _, p := range f.pipes {
			if !p.Failing() {
				p.Unchanged(now)
			}
		}
		return
	}
	f.seen, f.bad = id, false
	data, err := filesource.ReadFile(f.path)
	if err != nil {
		f.seen = fileID{} // a read error may pass: try again next time
		f.all(func(p *pipeline) error { return p.CheckFailed(err) })
		return
	}
	doc, err := filesource.DecodeCurrent(f.key, data)
	if err != nil {
		f.bad = true
		// The same bytes fail again: counted once, until the file changes.
		f.all(func(p *pipeline) error {
			return p.FetchFailed(metrics.RotationDecryptFailed, 0, fmt.Errorf("%s: %w", f.path, err))
		})
		return
	}
	defer doc.Wipe() // whatever was not handed to the store
	for _, c := range f.creds {
		f.checkSet(ctx, c, doc.Credentials[c.KVPath()], now)
	}
}

// checkSet compares one set's current version in the file with the served
// one and publishes it when they differ.
func (f *File) checkSet(ctx context.Context, c credspec.Credential, e *filesource.CurrentSet, now time.Time) {
	p := f.pipes[c.Name]
	switch {
	case e == nil:
		_ = p.CheckFailed(fmt.Errorf("%s is not in the credentials file %s", c.KVPath(), f.path))
	case !e.DeletedAt.IsZero():
		_ = p.Gone(e.Version, "was revoked at "+e.DeletedAt.UTC().Format(time.RFC3339))
	case p.Served() == e.Version:
		p.Unchanged(now)
	case e.Version < p.Served():
		// An older copy of the file put back (a restored backup, or a
		// replay by someone who can write the file but not read the key)
		// would hand the app credentials already rotated away.
		if _, skipped := p.Skipped(e.Version); !skipped {
			_ = p.fail(metrics.RotationInvalid, e.Version, fmt.Errorf(
				"version %d in %s: %w %d: refusing to go back; to return to old values, write them as a new version (credlet-agent creds rollback PATH VERSION)",
				e.Version, f.path, ErrOlder, p.Served()))
		}
	default:
		values := e.Fields
		e.Fields = nil // moved into the pipeline, which wipes what it does not commit
		_ = p.Publish(ctx, &Fetched{Version: e.Version, CreatedAt: e.CreatedAt, Values: values}, nil, now)
	}
}

// all reports one file-wide failure to every set's pipeline.
func (f *File) all(report func(p *pipeline) error) {
	for _, c := range f.creds {
		_ = report(f.pipes[c.Name])
	}
}

func stat(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime(), ok: true}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = int64(st.Ino)
	}
	return id, nil
}
