package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// EnvToolsDir names the environment variable holding the folder of server
// binaries. The Makefile exports it (and KUBEBUILDER_ASSETS, same folder).
const EnvToolsDir = "CREDLET_TOOLS_DIR"

// ErrBinaryMissing is wrapped by every error caused by a server binary that is
// not where this package looks for it (see Binary).
var ErrBinaryMissing = errors.New("testenv: server binary missing (run `make tools`)")

// Names of the binaries this package starts.
const (
	BinVault         = "vault"
	BinKubeAPIServer = "kube-apiserver"
	BinEtcd          = "etcd"
)

// InCI reports whether the tests run under CI: env CI is set to anything but
// "", "0" or "false". Under CI a missing server binary fails the tests
// instead of skipping them.
func InCI() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "", "0", "false":
		return false
	}
	return true
}

// ToolsDir returns the folder of server binaries: $CREDLET_TOOLS_DIR when it
// is set (an explicit choice is never second-guessed), otherwise the newest
// $XDG_CACHE_HOME/credlet/tools-*/ (or ~/.cache/credlet/tools-*/) folder
// that holds all of vault, kube-apiserver and etcd, otherwise the newest one
// holding any of them.
func ToolsDir() (string, error) {
	if dir := os.Getenv(EnvToolsDir); dir != "" {
		return dir, nil
	}
	dirs := cachedToolsDirs()
	for _, d := range dirs {
		if hasAll(d, BinVault, BinKubeAPIServer, BinEtcd) {
			return d, nil
		}
	}
	for _, d := range dirs {
		if hasAny(d, BinVault, BinKubeAPIServer, BinEtcd) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: $%s is unset and no %s holds a server binary",
		ErrBinaryMissing, EnvToolsDir, cacheGlob())
}

// Binary returns the path of the named server binary. With $CREDLET_TOOLS_DIR
// set it looks only there; otherwise it takes the newest cached tools folder
// that holds this binary. The error wraps ErrBinaryMissing.
func Binary(name string) (string, error) {
	if dir := os.Getenv(EnvToolsDir); dir != "" {
		p := filepath.Join(dir, name)
		if !isExecutable(p) {
			return "", fmt.Errorf("%w: %s not found in $%s=%s", ErrBinaryMissing, name, EnvToolsDir, dir)
		}
		return p, nil
	}
	for _, d := range cachedToolsDirs() {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s: $%s is unset and no %s holds it",
		ErrBinaryMissing, name, EnvToolsDir, cacheGlob())
}

// RequireBinary returns the path of the named server binary. When it is
// missing the test fails under CI (see InCI) and is skipped otherwise.
func RequireBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := Binary(name)
	if err != nil {
		if InCI() {
			tb.Fatalf("CI is set and a server binary is missing: %v", err)
			return ""
		}
		tb.Skipf("skipping: %v", err)
	}
	return p
}

func cacheGlob() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "<no cache dir>"
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "credlet", "tools-*")
}

// cachedToolsDirs lists the cached tools folders, newest first.
func cachedToolsDirs() []string {
	matches, _ := filepath.Glob(cacheGlob())
	type dir struct {
		path  string
		mtime int64
	}
	var dirs []dir
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil || !fi.IsDir() {
			continue
		}
		dirs = append(dirs, dir{m, fi.ModTime().UnixNano()})
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].mtime > dirs[j].mtime })
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = d.path
	}
	return out
}

func hasAll(dir string, names ...string) bool {
	for _, n := range names {
		if !isExecutable(filepath.Join(dir, n)) {
			return false
		}
	}
	return true
}

func hasAny(dir string, names ...string) bool {
	for _, n := range names {
		if isExecutable(filepath.Join(dir, n)) {
			return true
		}
	}
	return false
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago and
// that this process has not handed out before. Another process may still take
// it before it is bound; the Start functions retry on such a race.
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port, nil
		}
	}
	return 0, errors.New("free port: no unused port after 20 tries")
}

// freePortPair returns a port p such that p and p+1 are both free (Vault's
// dev server binds its cluster listener on the API port + 1).
func freePortPair() (int, error) {
	for range 20 {
		p, err := FreePort()
		if err != nil {
			return 0, err
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err != nil {
			continue
		}
		_ = l.Close()
		portsMu.Lock()
		taken := portsUsed[p+1]
		portsUsed[p+1] = true
		portsMu.Unlock()
		if !taken {
			return p, nil
		}
	}
	return 0, errors.New("free port: no free pair of ports after 20 tries")
}
