package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/store"
)

const (
	dataLink   = "..data"
	dataTmp    = "..data_tmp" // the new ..data before its rename
	linkTmp    = "..link_tmp" // a field symlink before its rename
	tsLayout   = "2006_01_02_15_04_05."
	setDirMode = 0o755 // lists field names only; values are guarded by the version dir and file modes
)

// mapping is a delivered file the agent keeps mapped and locked while its
// version is current, so tmpfs cannot swap its pages out.
type mapping struct{ mem []byte }

// size is the memory locked: whole pages.
func (m mapping) size() int64 {
	ps := int64(os.Getpagesize())
	return (int64(len(m.mem)) + ps - 1) / ps * ps
}

func unmapAll(ms []mapping) {
	for _, m := range ms {
		_ = unix.Munlock(m.mem)
		_ = unix.Munmap(m.mem)
	}
}

// publish writes one version of a set into a fresh directory and swaps it
// in. With lock, it returns the new files' mappings; the caller unmaps the
// previous ones.
func (s *Sink) publish(c credspec.Credential, set *store.Set, lock bool) ([]mapping, error) {
	files, err := contents(c, set)
	if err != nil {
		return nil, err
	}
	defer freeAll(files)
	setDir := filepath.Join(s.dir, c.Name)
	if err := mkdirMode(setDir, setDirMode); err != nil {
		return nil, err
	}
	tsDir, err := os.MkdirTemp(setDir, ".."+s.clock.Now().UTC().Format(tsLayout))
	if err != nil {
		return nil, fmt.Errorf("version directory: %w", err)
	}
	var maps []mapping
	published := false
	defer func() {
		if !published {
			unmapAll(maps)
			removeDir(tsDir)
		}
	}()
	for _, f := range files {
		m, err := s.writeFile(filepath.Join(tsDir, f.name), f.data, lock && f.lock)
		if err != nil {
			return nil, err
		}
		if m != nil {
			maps = append(maps, *m)
		}
	}
	if err := os.Chmod(tsDir, s.dirMode); err != nil {
		return nil, fmt.Errorf("version directory: %w", err)
	}
	if s.chown {
		if err := os.Lchown(tsDir, s.uid, s.gid); err != nil {
			return nil, fmt.Errorf("version directory: %w (another owner needs CAP_CHOWN)", err)
		}
	}
	if err := syncDir(tsDir); err != nil {
		return nil, err
	}
	old, _ := os.Readlink(filepath.Join(setDir, dataLink))
	if err := replaceLink(setDir, dataTmp, dataLink, filepath.Base(tsDir)); err != nil {
		return nil, fmt.Errorf("swapping %s: %w", dataLink, err)
	}
	published = true
	// From here the version is live; what fails is logged, not undone.
	if err := updateLinks(setDir, files); err != nil {
		s.log.Warn("credential file links", "credential", c.Name, "error", err.Error())
	}
	if err := syncDir(setDir); err != nil {
		s.log.Warn("credential directory fsync", "credential", c.Name, "error", err.Error())
	}
	if old != "" && old != filepath.Base(tsDir) && isVersionDir(old) {
		removeDir(filepath.Join(setDir, old))
	}
	return maps, nil
}

// writeFile creates path with data, owner and mode, fsyncs it and, with
// lock, maps and locks it.
func (s *Sink) writeFile(path string, data []byte, lock bool) (*mapping, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return nil, err
	}
	if s.chown {
		if err := f.Chown(s.uid, s.gid); err != nil {
			return nil, fmt.Errorf("%w (another owner needs CAP_CHOWN)", err)
		}
	}
	if err := f.Chmod(s.mode); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if !lock || len(data) == 0 {
		return nil, nil
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		s.lockFailed(path, err)
		return nil, nil
	}
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	if err := unix.Mlock(mem); err != nil {
		_ = unix.Munmap(mem)
		s.lockFailed(path, err)
		return nil, nil
	}
	return &mapping{mem: mem}, nil
}

// lockFailed reports, once, that file pages could not be locked.
func (s *Sink) lockFailed(path string, err error) {
	if s.lockWarned.CompareAndSwap(false, true) {
		s.log.Warn("cannot lock credential file pages in memory; tmpfs may swap them (raise RLIMIT_MEMLOCK or grant IPC_LOCK)",
			"file", path, "error", err.Error())
	}
}

// replaceLink points dir/name at target atomically, through dir/tmp.
func replaceLink(dir, tmp, name, target string) error {
	tmpPath := filepath.Join(dir, tmp)
	if err := os.Remove(tmpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmpPath); err != nil {
		return err
	}
	if err := os.Rename(tmpPath, filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmpPath)
		return err
	}
	return nil
}

// updateLinks creates name -> ..data/name for each linked file and removes
// links to files the version no longer has.
func updateLinks(setDir string, files []content) error {
	want := map[string]bool{}
	var errs []error
	for _, f := range files {
		if !f.link {
			continue
		}
		want[f.name] = true
		target := dataLink + "/" + f.name
		if cur, err := os.Readlink(filepath.Join(setDir, f.name)); err == nil && cur == target {
			continue
		}
		if err := replaceLink(setDir, linkTmp, f.name, target); err != nil {
			errs = append(errs, fmt.Errorf("link %s: %w", f.name, err))
		}
	}
	entries, err := os.ReadDir(setDir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		n := e.Name()
		if want[n] || strings.HasPrefix(n, "..") || e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if t, err := os.Readlink(filepath.Join(setDir, n)); err == nil && strings.HasPrefix(t, dataLink+"/") {
			if err := os.Remove(filepath.Join(setDir, n)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// cleanStale removes what a crashed run left in a set's directory: version
// directories ..data does not point to, and temporary links.
func cleanStale(setDir string) (removed []string) {
	entries, err := os.ReadDir(setDir)
	if err != nil {
		return nil
	}
	cur, _ := os.Readlink(filepath.Join(setDir, dataLink))
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "..") || n == dataLink || n == cur {
			continue
		}
		p := filepath.Join(setDir, n)
		if e.IsDir() {
			removeDir(p)
		} else {
			_ = os.Remove(p)
		}
		removed = append(removed, n)
	}
	return removed
}

// isVersionDir reports whether a ..data target is one of ours.
func isVersionDir(name string) bool {
	return strings.HasPrefix(name, "..") && !strings.Contains(name, "/") && name != dataLink
}

// removeDir removes a version directory, whose own mode may forbid it.
func removeDir(p string) {
	_ = os.Chmod(p, 0o700)
	_ = os.RemoveAll(p)
}

// mkdirMode creates dir (and parents) and gives dir the mode.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
