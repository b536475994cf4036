package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// All data dirs live under one folder per test process,
// $TMPDIR/credlet-testenv-<pid>-<random>. Each server removes its own dir when
// it stops. A test binary killed outright (SIGKILL, `go test -timeout`) runs
// no cleanup, so the next process sweeps folders whose pid is gone.
const tempPrefix = "credlet-testenv-"

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
	rootMu   sync.Mutex // orders creating a server dir with removing the emptied root
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
	d, err := os.MkdirTemp(root, kind+"-")
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	return d, nil
}

// removeDataDir removes a server's folder, and the process folder once empty.
func removeDataDir(dir string) error {
	err := os.RemoveAll(dir)
	rootMu.Lock()
	_ = os.Remove(filepath.Dir(dir)) // fails while another server still runs: fine
	rootMu.Unlock()
	return err
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
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(m)
	}
}
