package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/credlet/credlet/internal/testenv"
)

// EnvToolsDir names the folder of the cluster's own binaries (kubelet,
// kube-controller-manager, kube-scheduler, cni/bridge, cni/host-local,
// cni/loopback), filled by `make cluster-tools`. Unset, the newest
// ~/.cache/credlet/cluster-*/ (or $XDG_CACHE_HOME's) holding all of them is used.
const EnvToolsDir = "CREDLET_CLUSTER_TOOLS_DIR"

// Names of the binaries the cluster runs, in the tools dir or on $PATH.
const (
	BinKubelet           = "kubelet"
	BinControllerManager = "kube-controller-manager"
	BinScheduler         = "kube-scheduler"
	BinContainerd        = "containerd"
	BinCtr               = "ctr"
	BinRunc              = "runc"
	BinShim              = "containerd-shim-runc-v2"
)

var cniPlugins = []string{"bridge", "host-local", "loopback"}

type binaries struct {
	kubelet, controllerManager, scheduler string
	cniDir                                string
	containerd, ctr, runc                 string
}

// findBinaries locates every binary; the error wraps
// testenv.ErrBinaryMissing and says how to get what is missing.
func findBinaries() (*binaries, error) {
	dir, err := toolsDir()
	if err != nil {
		return nil, err
	}
	b := &binaries{
		kubelet:           filepath.Join(dir, BinKubelet),
		controllerManager: filepath.Join(dir, BinControllerManager),
		scheduler:         filepath.Join(dir, BinScheduler),
		cniDir:            filepath.Join(dir, "cni"),
	}
	for _, p := range append([]string{b.kubelet, b.controllerManager, b.scheduler}, cniPaths(b.cniDir)...) {
		if !isExecutable(p) {
			return nil, fmt.Errorf("%w: %s (run `make cluster-tools`)", testenv.ErrBinaryMissing, p)
		}
	}
	for _, x := range []struct {
		dst  *string
		name string
	}{{&b.containerd, BinContainerd}, {&b.ctr, BinCtr}, {&b.runc, BinRunc}, {new(string), BinShim}} {
		p, err := exec.LookPath(x.name)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not on $PATH (`make cluster-tools` installs Debian's containerd and runc with apt-get)", testenv.ErrBinaryMissing, x.name)
		}
		*x.dst = p
	}
	return b, nil
}

func cniPaths(dir string) []string {
	var out []string
	for _, n := range cniPlugins {
		out = append(out, filepath.Join(dir, n))
	}
	return out
}

func toolsDir() (string, error) {
	if d := os.Getenv(EnvToolsDir); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%w: $%s unset and no home dir: %v", testenv.ErrBinaryMissing, EnvToolsDir, err)
		}
		base = filepath.Join(home, ".cache")
	}
	glob := filepath.Join(base, "credlet", "cluster-*")
	matches, _ := filepath.Glob(glob)
	type cand struct {
		dir   string
		mtime int64
	}
	var cands []cand
	for _, m := range matches {
		if !isExecutable(filepath.Join(m, BinKubelet)) || !isExecutable(filepath.Join(m, BinControllerManager)) ||
			!isExecutable(filepath.Join(m, BinScheduler)) {
			continue
		}
		fi, err := os.Stat(m)
		if err == nil {
			cands = append(cands, cand{m, fi.ModTime().UnixNano()})
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("%w: $%s is unset and no %s holds the kubelet (run `make cluster-tools`)", testenv.ErrBinaryMissing, EnvToolsDir, glob)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].mtime > cands[j].mtime })
	return cands[0].dir, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
