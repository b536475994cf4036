package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// All data dirs live under one folder per test process,
// $TMPDIR/credlet-testenv-<pid>-<random>. Each server removes its own dir when
// it stops. A test binary killed outright (SIGKILL, `go test -timeout`) runs
// no cleanup, so the next process sweeps folders whose owner is gone. The
// owner holds an flock on the folder's lock file for as long as the folder
// lives: a pid alone cannot tell, because a process in another PID namespace
// (the cluster tests run in one) sees none of the host's pids.
const (
	tempPrefix = "credlet-testenv-"
	lockName   = ".owner.lock"
)

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
	rootMu   sync.Mutex // orders creating a server dir with removing the emptied root
	rootLock *os.File   // flock held while the root exists; guarded by rootMu
)

func processTempRoot() (string, error) {
	rootOnce.Do(func() {
		sweepStaleTempDirs()
		rootDir, rootErr = os.MkdirTemp("", fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
	})
	return rootDir, rootErr
}

// newDataDir makes a fresh temporary folder for one server.
func newDataDir(kind string) (string, error) {
	root, err := processTempRoot()
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	rootMu.Lock()
	defer rootMu.Unlock()
	if err := os.MkdirAll(root, 0o700); err != nil { // removed when the last server stopped
		return "", fmt.Errorf("temp dir: %w", err)
	}
	if err := lockRoot(root); err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	d, err := os.MkdirTemp(root, kind+"-")
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	return d, nil
}

// lockRoot creates the root's lock file and holds an exclusive flock on it,
// unless this process holds it already.
func lockRoot(root string) error {
	if rootLock != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(root, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	rootLock = f
	return nil
}

// removeDataDir removes a server's folder, and the process folder once no
// other server's folder is left in it.
func removeDataDir(dir string) error {
	err := os.RemoveAll(dir)
	rootMu.Lock()
	defer rootMu.Unlock()
	root := filepath.Dir(dir)
	entries, _ := os.ReadDir(root)
	if len(entries) == 1 && entries[0].Name() == lockName && rootLock != nil {
		_ = os.Remove(rootLock.Name())
		rootLock.Close()
		rootLock = nil
		_ = os.Remove(root)
	}
	return err
}

// owned reports whether a live process still owns folder m: its lock file is
// locked, or (a folder without one) its pid is alive.
func owned(m string, pid int) bool {
	f, err := os.Open(filepath.Join(m, lockName))
	if err != nil {
		return processAlive(pid)
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
}

func sweepStaleTempDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), tempPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || owned(m, pid) {
			continue
		}
		_ = os.RemoveAll(m)
	}
}
