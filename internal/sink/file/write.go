package file

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

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

	// checkInterval is how often Run checks that each set's directory and
	// ..data are still the ones it made.
	checkInterval = 10 * time.Second
)

// testHookBeforeSwap, when set by a test, runs after a version's files are
// written and before ..data is swapped.
var testHookBeforeSwap func()

// Every path the sink creates, reads or removes is opened relative to a
// directory handle it holds, never following a symlink: the secrets
// directory is shared with the app's containers, so anything in it may
// have been replaced by a link to elsewhere. Only the secrets directory
// itself (the operator's --secrets-dir) is opened by path.

const (
	dirFlags  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fileFlags = unix.O_RDWR | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
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

// versionDir identifies a published version directory: its name and inode.
type versionDir struct {
	name     string
	dev, ino uint64
}

// intact reports whether ..data in setFD still names this version
// directory, and the entry of that name is still the directory the sink
// made (not one put in its place).
func (v versionDir) intact(setFD int) bool {
	if v.name == "" {
		return false
	}
	cur, err := readlinkat(setFD, dataLink)
	if err != nil || cur != v.name {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstatat(setFD, v.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && uint64(st.Dev) == v.dev && st.Ino == v.ino
}

// openRoot creates the secrets directory if needed and opens it.
func (s *Sink) openRoot() (int, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return -1, fmt.Errorf("secrets directory: %w", err)
	}
	fd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("secrets directory %s: %w", s.dir, err)
	}
	return fd, nil
}

// openSetDir opens the set directory name under root, creating it if
// missing. A symlink there (planted: the sink never makes one) is removed
// and replaced with a directory, with one log line; anything else that is
// not a directory is an error.
func (s *Sink) openSetDir(root int, name string) (int, error) {
	for range 3 {
		fd, err := unix.Openat(root, name, dirFlags, 0)
		if err == nil {
			return fd, nil
		}
		switch {
		case errors.Is(err, unix.ENOENT):
			if err := unix.Mkdirat(root, name, setDirMode); err != nil && !errors.Is(err, unix.EEXIST) {
				return -1, fmt.Errorf("set directory %s: %w", name, err)
			}
			// The mode is subject to the umask; make it exact.
			if fd, err := unix.Openat(root, name, dirFlags, 0); err == nil {
				_ = unix.Fchmod(fd, setDirMode)
				return fd, nil
			}
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			var st unix.Stat_t
			if err := unix.Fstatat(root, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return -1, fmt.Errorf("set directory %s: %w", name, err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFLNK {
				return -1, fmt.Errorf("%s/%s exists and is not a directory; move it away", s.dir, name)
			}
			target, _ := readlinkat(root, name)
			s.log.Warn("credential set directory is a symlink, which the agent never creates; replacing it with a directory (nothing is written where it points)",
				"credential", name, "dir", s.dir, "link_target", target)
			if err := unix.Unlinkat(root, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return -1, fmt.Errorf("removing the symlink at set directory %s: %w", name, err)
			}
		default:
			return -1, fmt.Errorf("set directory %s: %w", name, err)
		}
	}
	return -1, fmt.Errorf("set directory %s keeps changing under the agent", name)
}

// publish writes one version of a set into a fresh directory and swaps it
// in. With lock, it returns the new files' mappings; the caller unmaps the
// previous ones. It returns the version directory it made.
func (s *Sink) publish(setFD int, c credspec.Credential, set *store.Set, lock bool) (versionDir, []mapping, error) {
	var vd versionDir
	files, err := contents(c, set)
	if err != nil {
		return vd, nil, err
	}
	defer freeAll(files)
	tsName, tsFD, err := s.mkVersionDir(setFD)
	if err != nil {
		return vd, nil, fmt.Errorf("version directory: %w", err)
	}
	defer unix.Close(tsFD)
	var st unix.Stat_t
	if err := unix.Fstat(tsFD, &st); err != nil {
		removeTreeAt(setFD, tsName)
		return vd, nil, fmt.Errorf("version directory: %w", err)
	}
	vd = versionDir{name: tsName, dev: uint64(st.Dev), ino: st.Ino}
	var maps []mapping
	published := false
	defer func() {
		if !published {
			unmapAll(maps)
			removeTreeAt(setFD, tsName)
		}
	}()
	for _, f := range files {
		m, err := s.writeFile(tsFD, f.name, f.data, lock && f.lock)
		if err != nil {
			return vd, nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if m != nil {
			maps = append(maps, *m)
		}
	}
	if err := unix.Fchmod(tsFD, uint32(s.dirMode)); err != nil {
		return vd, nil, fmt.Errorf("version directory: chmod: %w", err)
	}
	if s.chown {
		if err := unix.Fchown(tsFD, s.uid, s.gid); err != nil {
			return vd, nil, fmt.Errorf("version directory: chown: %w (another owner needs CAP_CHOWN)", err)
		}
	}
	if err := unix.Fsync(tsFD); err != nil {
		return vd, nil, fmt.Errorf("version directory: fsync: %w", err)
	}
	if testHookBeforeSwap != nil {
		testHookBeforeSwap()
	}
	old, _ := readlinkat(setFD, dataLink)
	if err := s.swapDataLink(setFD, c.Name, tsName); err != nil {
		return vd, nil, fmt.Errorf("swapping %s: %w", dataLink, err)
	}
	published = true
	// From here the version is live; what fails is logged, not undone.
	if err := updateLinks(setFD, files); err != nil {
		s.log.Warn("credential file links", "credential", c.Name, "error", err.Error())
	}
	if err := unix.Fsync(setFD); err != nil {
		s.log.Warn("credential directory fsync", "credential", c.Name, "error", err.Error())
	}
	if old != "" && old != tsName && isVersionDir(old) {
		removeTreeAt(setFD, old)
	}
	return vd, maps, nil
}

// mkVersionDir creates and opens a fresh ..<timestamp><random> directory.
func (s *Sink) mkVersionDir(setFD int) (string, int, error) {
	prefix := ".." + s.clock.Now().UTC().Format(tsLayout)
	for range 100 {
		name := prefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		if err := unix.Mkdirat(setFD, name, 0o700); err != nil {
			if errors.Is(err, unix.EEXIST) {
				continue
			}
			return "", -1, err
		}
		fd, err := unix.Openat(setFD, name, dirFlags, 0)
		if err != nil {
			removeTreeAt(setFD, name)
			return "", -1, err
		}
		return name, fd, nil
	}
	return "", -1, errors.New("no free version directory name after 100 tries")
}

// swapDataLink points ..data at the version directory by one rename. A
// planted directory where ..data belongs is removed first (rename cannot
// replace it), with one log line.
func (s *Sink) swapDataLink(setFD int, name, tsName string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(setFD, dataLink, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
		s.log.Warn("credential directory: ..data is not a symlink, which the agent never makes; removing it", "credential", name)
		removeTreeAt(setFD, dataLink)
	}
	return replaceLink(setFD, dataTmp, dataLink, tsName)
}

// writeFile creates name in the version directory with data, owner and
// mode, fsyncs it and, with lock, maps and locks it.
func (s *Sink) writeFile(dirFD int, name string, data []byte, lock bool) (*mapping, error) {
	fd, err := unix.Openat(dirFD, name, fileFlags, 0o600)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
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
		s.lockFailed(name, err)
		return nil, nil
	}
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	if err := unix.Mlock(mem); err != nil {
		_ = unix.Munmap(mem)
		s.lockFailed(name, err)
		return nil, nil
	}
	return &mapping{mem: mem}, nil
}

// lockFailed reports, once, that file pages could not be locked.
func (s *Sink) lockFailed(name string, err error) {
	if s.lockWarned.CompareAndSwap(false, true) {
		s.log.Warn("cannot lock credential file pages in memory; tmpfs may swap them (raise RLIMIT_MEMLOCK or grant IPC_LOCK)",
			"file", name, "error", err.Error())
	}
}

// readlinkat returns the target of the symlink name in dirFD.
func readlinkat(dirFD int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirFD, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// replaceLink points name in dirFD at target atomically, through tmp. rename
// replaces a symlink itself, never what it points to.
func replaceLink(dirFD int, tmp, name, target string) error {
	if err := unix.Unlinkat(dirFD, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		if errors.Is(err, unix.EISDIR) {
			removeTreeAt(dirFD, tmp)
		} else {
			return err
		}
	}
	if err := unix.Symlinkat(target, dirFD, tmp); err != nil {
		return err
	}
	if err := unix.Renameat(dirFD, tmp, dirFD, name); err != nil {
		_ = unix.Unlinkat(dirFD, tmp, 0)
		return err
	}
	return nil
}

// entriesAt lists the directory dirFD.
func entriesAt(dirFD int) ([]os.DirEntry, error) {
	fd, err := unix.Openat(dirFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), ".")
	defer d.Close()
	return d.ReadDir(-1)
}

// updateLinks creates name -> ..data/name for each linked file and removes
// links to files the version no longer has.
func updateLinks(setFD int, files []content) error {
	want := map[string]bool{}
	var errs []error
	for _, f := range files {
		if !f.link {
			continue
		}
		want[f.name] = true
		target := dataLink + "/" + f.name
		if cur, err := readlinkat(setFD, f.name); err == nil && cur == target {
			continue
		}
		if err := replaceLink(setFD, linkTmp, f.name, target); err != nil {
			errs = append(errs, fmt.Errorf("link %s: %w", f.name, err))
		}
	}
	entries, err := entriesAt(setFD)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		n := e.Name()
		if want[n] || strings.HasPrefix(n, "..") || e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if t, err := readlinkat(setFD, n); err == nil && strings.HasPrefix(t, dataLink+"/") {
			if err := unix.Unlinkat(setFD, n, 0); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// cleanStale removes what a crashed run (or anyone else) left in a set's
// directory: ".."-named entries other than ..data and the version
// directory it points to.
func cleanStale(setFD int) (removed []string) {
	entries, err := entriesAt(setFD)
	if err != nil {
		return nil
	}
	cur, _ := readlinkat(setFD, dataLink)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "..") || n == dataLink || (n == cur && e.IsDir()) {
			continue
		}
		removeTreeAt(setFD, n)
		removed = append(removed, n)
	}
	return removed
}

// isVersionDir reports whether a ..data target names an entry beside it
// that could be one of ours.
func isVersionDir(name string) bool {
	return strings.HasPrefix(name, "..") && !strings.Contains(name, "/") && name != dataLink
}

// removeTreeAt removes name in dirFD and, if it is a directory, everything
// in it, never following a symlink: a link is removed, not what it points
// to. A version directory's own mode may forbid removing its files, so a
// directory is given 0700 first (through its handle).
func removeTreeAt(dirFD int, name string) {
	fd, err := unix.Openat(dirFD, name, dirFlags, 0)
	if err != nil {
		_ = unix.Unlinkat(dirFD, name, 0) // a symlink or a file
		return
	}
	_ = unix.Fchmod(fd, 0o700)
	if entries, err := entriesAt(fd); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				removeTreeAt(fd, e.Name())
			} else {
				_ = unix.Unlinkat(fd, e.Name(), 0)
			}
		}
	}
	_ = unix.Close(fd)
	_ = unix.Unlinkat(dirFD, name, unix.AT_REMOVEDIR)
}
