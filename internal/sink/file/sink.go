package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/store"
)

// DefaultMode is the mode of written files.
const DefaultMode os.FileMode = 0o400

// Retry delays after a failed write (the last good files keep serving).
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// Options configure a Sink.
type Options struct {
	Dir     string      // secrets directory (a tmpfs in a pod)
	UID     int         // owner of written files; -1: the agent's own
	GID     int         // group of written files; -1: the agent's own
	Mode    os.FileMode // 0: DefaultMode (0400); read/write bits only
	Logger  *slog.Logger
	Metrics *metrics.Agent // nil: no metrics
	Clock   clock.Clock    // version directory names and retry timers; nil: clock.Real
}

// Sink writes credential sets to files. Build it with New; Run keeps the
// files current, WriteAll writes once.
type Sink struct {
	st       *store.Store
	creds    []credspec.Credential
	dir      string
	uid, gid int
	chown    bool
	mode     os.FileMode
	dirMode  os.FileMode
	log      *slog.Logger
	m        *metrics.Agent
	clock    clock.Clock

	lockWarned atomic.Bool

	// writeMu makes one writer at a time; it is held across file writes
	// and fsyncs. mu guards written only, briefly, so Versions (what
	// /readyz asks) never waits for a write.
	writeMu sync.Mutex
	maps    map[string][]mapping  // current files kept locked, by credential name; under writeMu
	current map[string]versionDir // what ..data should name, by credential name; under writeMu
	mu      sync.Mutex
	written map[string]onDisk // by credential name

	wrote chan struct{} // signalled (coalescing) after a new version is on disk
}

// onDisk identifies the version a set's files hold.
type onDisk struct {
	version       int
	valuesVersion int // the version that introduced the values (store.Set.ValuesVersion)
	fetchedAt     time.Time
}

// New checks the options against the credentials it will write. Every
// credential must be declared in st.
func New(st *store.Store, creds []credspec.Credential, opts Options) (*Sink, error) {
	if st == nil {
		return nil, errors.New("file sink: nil store")
	}
	if opts.Dir == "" {
		return nil, errors.New("secrets directory is empty: give a directory, e.g. /credlet/secrets")
	}
	if opts.Mode == 0 {
		opts.Mode = DefaultMode
	}
	if opts.Mode&^0o666 != 0 {
		return nil, fmt.Errorf("file mode %#o: allowed read/write permission bits only, e.g. 0400 or 0440", uint32(opts.Mode))
	}
	if opts.Mode&0o400 == 0 {
		return nil, fmt.Errorf("file mode %#o: the owner must be able to read (0400 at least)", uint32(opts.Mode))
	}
	if opts.UID < -1 || opts.GID < -1 {
		return nil, fmt.Errorf("file owner %d:%d: want ids >= 0, or -1 for the agent's own", opts.UID, opts.GID)
	}
	s := &Sink{
		st: st, dir: opts.Dir, uid: opts.UID, gid: opts.GID, mode: opts.Mode, dirMode: dirModeFor(opts.Mode),
		log: opts.Logger, m: opts.Metrics, clock: opts.Clock,
		written: map[string]onDisk{}, maps: map[string][]mapping{}, current: map[string]versionDir{}, wrote: make(chan struct{}, 1),
	}
	if s.uid == os.Getuid() {
		s.uid = -1
	}
	if s.gid == os.Getgid() {
		s.gid = -1
	}
	s.chown = s.uid != -1 || s.gid != -1
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = clock.Real
	}
	declared := st.Names()
	for _, c := range creds {
		if !slices.Contains(declared, c.Name) {
			return nil, fmt.Errorf("credential %q is not declared in the store", c.Name)
		}
		if slices.ContainsFunc(s.creds, func(o credspec.Credential) bool { return o.Name == c.Name }) {
			return nil, fmt.Errorf("credential %q given twice", c.Name)
		}
		if c.Format == credspec.FormatFiles || c.Format == "" {
			for _, f := range c.Fields {
				if err := checkFileName(f); err != nil {
					return nil, fmt.Errorf("credential %q: %w", c.Name, err)
				}
			}
		}
		s.creds = append(s.creds, c)
	}
	return s, nil
}

// dirModeFor gives a version directory r-x wherever the files are readable.
func dirModeFor(m os.FileMode) os.FileMode {
	var d os.FileMode
	for _, bit := range []os.FileMode{0o400, 0o040, 0o004} {
		if m&bit != 0 {
			d |= bit | bit>>2 // r and x
		}
	}
	return d
}

// Run removes what a crashed run left behind, writes every committed set,
// then writes each new version as it is committed, until ctx ends. Every
// checkInterval it also checks that each set's directory and ..data are
// still the ones it made, and rewrites a set whose were changed. A failed
// write is retried with backoff; the last good files keep serving. It
// returns nil on cancel, after unmapping the files it kept locked.
func (s *Sink) Run(ctx context.Context) error {
	if err := s.cleanAll(); err != nil {
		return err
	}
	sub := s.st.Subscribe()
	defer sub.Close()
	defer s.release()
	delay := retryMin
	for {
		var retry <-chan time.Time
		var t clock.Timer
		if err := s.sync(true); err != nil {
			t = s.clock.NewTimer(delay)
			retry = t.C()
			s.log.Info("credential files: retrying", "in", delay.String())
			delay = min(delay*2, retryMax)
		} else {
			delay = retryMin
		}
		check := s.clock.NewTimer(checkInterval)
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			check.Stop()
			return nil
		case <-sub.Updated():
			if t != nil {
				t.Stop()
			}
		case <-retry:
		case <-check.C():
			if t != nil {
				t.Stop()
			}
		}
		check.Stop()
	}
}

// WriteAll writes the current version of every set once (for --once) and
// keeps nothing mapped. A required set that was never committed is an error
// (wrapping store.ErrNotReady); an optional one is skipped.
func (s *Sink) WriteAll() error {
	if err := s.cleanAll(); err != nil {
		return err
	}
	var errs []error
	for _, c := range s.creds {
		if c.Optional {
			continue
		}
		set, err := s.st.Acquire(c.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("credential %q: %w", c.Name, err))
			continue
		}
		set.Release()
	}
	if err := s.sync(false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cleanAll creates the secrets directory if needed and removes the
// leftovers of an earlier run from every set directory.
func (s *Sink) cleanAll() error {
	root, err := s.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for _, c := range s.creds {
		setFD, err := unix.Openat(root, c.Name, dirFlags, 0)
		if err != nil {
			continue // missing, or not a directory: the first write deals with it
		}
		if removed := cleanStale(setFD); len(removed) > 0 {
			s.log.Info("removed leftovers of an earlier run", "credential", c.Name, "entries", removed)
		}
		_ = unix.Close(setFD)
	}
	return nil
}

// sync writes every set whose current version is not on disk yet, or whose
// directory or ..data was changed by someone else.
func (s *Sink) sync(lock bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	root, err := s.openRoot()
	if err != nil {
		s.log.Error("writing credential files failed; the previous files stay", "error", err.Error())
		return err
	}
	defer unix.Close(root)
	var errs []error
	for _, c := range s.creds {
		if err := s.syncOne(root, c, lock); err != nil {
			s.log.Error("writing credential files failed; the previous files stay", "credential", c.Name, "error", err.Error())
			errs = append(errs, fmt.Errorf("credential %q: %w", c.Name, err))
		}
	}
	if lock && s.m != nil {
		var n int64
		for _, ms := range s.maps {
			for _, m := range ms {
				n += m.size()
			}
		}
		s.m.MemoryLocked.WithLabelValues(metrics.ScopeFiles).Set(float64(n))
	}
	return errors.Join(errs...)
}

func (s *Sink) syncOne(root int, c credspec.Credential, lock bool) error {
	set, err := s.st.Acquire(c.Name)
	if errors.Is(err, store.ErrNotReady) {
		return nil
	}
	if err != nil {
		return err
	}
	defer set.Release()
	setFD, err := s.openSetDir(root, c.Name)
	if err != nil {
		return err
	}
	defer unix.Close(setFD)
	d := onDisk{version: set.Version(), valuesVersion: set.ValuesVersion(), fetchedAt: set.FetchedAt()}
	s.mu.Lock()
	w, ok := s.written[c.Name]
	s.mu.Unlock()
	if ok && w == d {
		if s.current[c.Name].intact(setFD) {
			return nil
		}
		s.log.Warn("credential directory or its ..data link was changed by someone else; writing the current version again",
			"credential", c.Name, "version", d.version)
	}
	vd, maps, err := s.publish(setFD, c, set, lock)
	if err != nil {
		return err
	}
	unmapAll(s.maps[c.Name])
	s.maps[c.Name] = maps
	s.current[c.Name] = vd
	s.mu.Lock()
	s.written[c.Name] = d
	s.mu.Unlock()
	s.log.Info("credential files written", "credential", c.Name, "version", d.version,
		"dir", filepath.Join(s.dir, c.Name), "format", string(c.Format), "locked_files", len(maps))
	select {
	case s.wrote <- struct{}{}:
	default: // already signalled: coalesce
	}
	return nil
}

// Written is signalled after one or more new versions are completely on
// disk, so a notification to a file-reading app never precedes its files.
// It has one consumer (the notifier).
func (s *Sink) Written() <-chan struct{} { return s.wrote }

// Versions returns, for every set written so far, the version that
// introduced the values on disk (store.Set.ValuesVersion): what the notifier
// announces, so a rewrap (same values, new version) is no news.
func (s *Sink) Versions() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.written))
	for name, d := range s.written {
		out[name] = d.valuesVersion
	}
	return out
}

// writtenVersion is the version of a set on disk, once its write (links,
// mappings, metrics) is complete; 0 before.
func (s *Sink) writtenVersion(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[name].version
}

// release unmaps every file kept locked.
func (s *Sink) release() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for name, ms := range s.maps {
		unmapAll(ms)
		delete(s.maps, name)
	}
	if s.m != nil {
		s.m.MemoryLocked.WithLabelValues(metrics.ScopeFiles).Set(0)
	}
}
