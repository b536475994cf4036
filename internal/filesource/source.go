package filesource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/store"
)

// DefaultRefresh is the slow poll that backs up the fsnotify watch.
const DefaultRefresh = 10 * time.Second

// Options configures a Source. Every field is optional.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Agent
	Audit   *audit.Logger
	Clock   clock.Clock
	// Credentials are the sets to serve, each read from its KVPath() in the
	// file. Empty: every set the file defines, as Names reports them.
	Credentials []credspec.Credential
	// Refresh is the poll interval (DefaultRefresh if zero).
	Refresh time.Duration
}

// Source serves credential sets from the encrypted file into a store.
type Source struct {
	path  string
	key   *Key
	store *store.Store
	creds []credspec.Credential
	log   *slog.Logger
	m     *metrics.Agent
	audit *audit.Logger
	clock clock.Clock
	every time.Duration

	committed map[string]int    // version committed per set
	lastErr   map[string]string // last error reported per set
	seen      fileID            // the file as last decoded successfully
}

// fileID tells whether the file changed since it was last decoded.
type fileID struct {
	ino, size int64
	mtime     time.Time
	ok        bool
}

// New loads the master key and prepares a source for the file at path.
// Every credential must be declared in st.
func New(path, keyFile string, st *store.Store, opts Options) (*Source, error) {
	key, err := LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	s := &Source{
		path: path, key: key, store: st, creds: opts.Credentials,
		log: opts.Logger, m: opts.Metrics, audit: opts.Audit, clock: opts.Clock, every: opts.Refresh,
		committed: map[string]int{}, lastErr: map[string]string{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = clock.Real
	}
	if s.every <= 0 {
		s.every = DefaultRefresh
	}
	if len(s.creds) == 0 {
		if s.creds, err = Names(path, keyFile); err != nil {
			key.Close()
			return nil, err
		}
	}
	declared := map[string]bool{}
	for _, n := range st.Names() {
		declared[n] = true
	}
	for _, c := range s.creds {
		if !declared[c.Name] {
			key.Close()
			return nil, fmt.Errorf("filesource: credential %q is not declared in the store", c.Name)
		}
	}
	s.log = s.log.With("source", "file", "file", path)
	return s, nil
}

// Credentials returns the sets this source serves.
func (s *Source) Credentials() []credspec.Credential { return s.creds }

// Close wipes the master key. The source must not run afterwards.
func (s *Source) Close() { s.key.Close() }

// Once reads the file and commits every set whose version changed. It
// returns an error naming each required set that has no version yet.
func (s *Source) Once(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.check(true)
	var errs []error
	for _, c := range s.creds {
		if _, ok := s.committed[c.Name]; !ok && !c.Optional {
			errs = append(errs, fmt.Errorf("credential %s: %s", c.Name, s.lastErr[c.Name]))
		}
	}
	return errors.Join(errs...)
}

// Run watches the file (fsnotify on its directory, so an atomic rename is
// seen, plus a poll every Refresh) and commits each change until ctx ends.
// It returns nil when ctx is cancelled.
func (s *Source) Run(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var werrs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(s.path)); err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		s.log.Warn("cannot watch the credentials file; polling only", "error", err.Error(), "refresh", s.every.String())
	} else {
		defer w.Close()
		events, werrs = w.Events, w.Errors
	}
	base := filepath.Base(s.path)
	s.check(true)
	for {
		t := s.clock.NewTimer(s.every)
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
			s.check(filepath.Base(ev.Name) == base)
		case err, ok := <-werrs:
			t.Stop()
			if !ok {
				werrs = nil
				continue
			}
			s.log.Warn("watching the credentials file", "error", err.Error())
		case <-t.C():
			s.check(false)
		}
	}
}

// agentDoc is the part of the document the agent decodes: current
// versions only; history is skipped without being copied.
type agentDoc struct {
	Credentials map[string]*struct {
		Version   int               `json:"version"`
		CreatedAt time.Time         `json:"created_at"`
		DeletedAt time.Time         `json:"deleted_at"`
		Fields    map[string][]byte `json:"fields"`
	} `json:"credentials"`
}

func (d *agentDoc) wipe() {
	for _, e := range d.Credentials {
		if e != nil {
			securemem.WipeFields(e.Fields)
		}
	}
}

// check reads the file if force or if it changed, and commits new versions.
func (s *Source) check(force bool) {
	now := s.clock.Now()
	id, err := stat(s.path)
	if err != nil {
		s.failAll(metrics.RotationFetchFailed, audit.Fetch, fmt.Sprintf("credentials file %s: %v", s.path, errors.Unwrap(err)))
		s.seen = fileID{}
		return
	}
	if !force && id == s.seen {
		for _, c := range s.creds {
			if s.lastErr[c.Name] == "" {
				s.store.MarkChecked(c.Name, now)
			}
		}
		return
	}
	data, err := readFile(s.path)
	if err != nil {
		s.failAll(metrics.RotationFetchFailed, audit.Fetch, err.Error())
		return
	}
	buf, n, err := open(s.key, data)
	if err != nil {
		s.failAll(metrics.RotationDecryptFailed, audit.Decrypt, fmt.Sprintf("%s: %v", s.path, err))
		return
	}
	var doc agentDoc
	err = json.Unmarshal(buf.Bytes()[:n], &doc)
	buf.Free()
	if err != nil {
		doc.wipe()
		s.failAll(metrics.RotationDecryptFailed, audit.Decrypt, fmt.Sprintf("%s: %v: decrypted but not valid JSON", s.path, ErrCorrupt))
		return
	}
	defer doc.wipe() // whatever was not handed to the store
	s.seen = id
	for _, c := range s.creds {
		e := doc.Credentials[c.KVPath()]
		switch {
		case e == nil:
			s.fail(c, metrics.RotationFetchFailed, audit.Fetch, 0, fmt.Sprintf("%s is not in the credentials file %s", c.KVPath(), s.path))
			continue
		case !e.DeletedAt.IsZero():
			s.fail(c, metrics.RotationFetchFailed, audit.Fetch, e.Version, revokedMsg(c, e.Version, e.DeletedAt, s.committed))
			continue
		case s.committedVersion(c.Name) == e.Version:
			s.ok(c.Name, now)
			continue
		}
		fields, err := selectFields(c, e.Fields)
		if err != nil {
			s.fail(c, metrics.RotationInvalid, audit.Fetch, e.Version, fmt.Sprintf("%s version %d: %v", c.KVPath(), e.Version, err))
			continue
		}
		s.audit.Log(audit.Record{Event: audit.Fetch, Credential: c.Name, Version: e.Version, Result: "ok", Detail: "file source"})
		if err := s.store.Commit(c.Name, store.Meta{Version: e.Version, CreatedAt: e.CreatedAt, FetchedAt: now}, fields); err != nil {
			s.fail(c, metrics.RotationInvalid, audit.Commit, e.Version, err.Error())
			continue
		}
		prev := s.committed[c.Name] // 0: the first version
		s.committed[c.Name] = e.Version
		s.ok(c.Name, now)
		if s.m != nil {
			s.m.CredentialVersion.WithLabelValues(c.Name).Set(float64(e.Version))
			s.m.LastRotation.WithLabelValues(c.Name).Set(float64(e.CreatedAt.Unix()))
			s.m.Rotations.WithLabelValues(c.Name, metrics.RotationCommitted).Inc()
		}
		s.audit.Log(audit.Record{Event: audit.Commit, Credential: c.Name, Version: e.Version, Result: "ok", Detail: "file source"})
		// The same record as the Vault source's.
		s.log.Info("credential committed", "credential", c.Name, "kv_path", c.KVPath(), "version", e.Version,
			"previous_version", prev, "created_at", e.CreatedAt)
	}
}

func revokedMsg(c credspec.Credential, v int, at time.Time, committed map[string]int) string {
	msg := fmt.Sprintf("%s version %d was revoked at %s", c.KVPath(), v, at.UTC().Format(time.RFC3339))
	have, ok := committed[c.Name]
	switch {
	case !ok:
		return msg + "; nothing is served for it until a new version is written"
	case have == v:
		return msg + "; the agent keeps serving it until a new version is written (restart the agent to drop it)"
	default:
		return msg + fmt.Sprintf("; still serving version %d until a new version is written", have)
	}
}

func (s *Source) committedVersion(name string) int {
	v, ok := s.committed[name]
	if !ok {
		return -1
	}
	return v
}

// selectFields picks the fields to deliver: the listed ones, each
// required and non-empty, or all of them. The picked slices move out of
// the document (which is wiped afterwards) into the returned map.
func selectFields(c credspec.Credential, all map[string][]byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(c.Fields) == 0 {
		if len(all) == 0 {
			return nil, errors.New("no fields")
		}
		for k, v := range all {
			out[k] = v
			delete(all, k)
		}
		return out, nil
	}
	for _, f := range c.Fields {
		v, ok := all[f]
		if !ok || len(v) == 0 {
			securemem.WipeFields(out)
			return nil, fmt.Errorf("required field %q is missing or empty", f)
		}
		out[f] = v
		delete(all, f)
	}
	return out, nil
}

func (s *Source) ok(name string, now time.Time) {
	if s.lastErr[name] != "" {
		s.log.Info("credential source recovered", "credential", name)
	}
	delete(s.lastErr, name)
	s.store.MarkChecked(name, now)
}

func (s *Source) failAll(result string, ev audit.Event, msg string) {
	for _, c := range s.creds {
		s.fail(c, result, ev, 0, msg)
	}
}

// fail records a problem with one set; the last good version keeps
// serving. A repeated identical problem is logged once.
func (s *Source) fail(c credspec.Credential, result string, ev audit.Event, version int, msg string) {
	s.store.MarkError(c.Name, msg)
	if s.lastErr[c.Name] == msg {
		return
	}
	s.lastErr[c.Name] = msg
	if s.m != nil {
		s.m.Rotations.WithLabelValues(c.Name, result).Inc()
	}
	s.audit.Log(audit.Record{Event: ev, Credential: c.Name, Version: version, Result: "error", Detail: msg})
	s.log.Warn("credential not updated; last good version keeps serving", "credential", c.Name, "result", result, "error", msg)
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
