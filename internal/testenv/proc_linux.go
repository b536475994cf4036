package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts a server in its own process group (so Stop, Pause and
// Resume signal the whole group) and has the kernel SIGKILL it when the test
// binary dies, even by SIGKILL or a `go test -timeout` panic, which run no
// cleanup. The death signal follows the OS thread that forked the child; the
// Go runtime does not retire threads unless a goroutine exits while locked to
// one, which this package never does around a fork.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// envtest starts etcd and kube-apiserver itself, with Setpgid but no death
// signal. To give them one, envtest is pointed at symlinks to this very test
// binary, named like the servers, in a folder that also holds wrapMarker (a
// name=path list). When the test binary starts under such a name, init below
// sets the death signal and execs the real server: the signal survives
// execve, so the server dies with the test binary.
const wrapMarker = ".credlet-testenv-exec"

func init() {
	dir, name := filepath.Split(os.Args[0])
	if name != BinEtcd && name != BinKubeAPIServer {
		return
	}
	list, err := os.ReadFile(filepath.Join(dir, wrapMarker))
	if err != nil {
		return // a binary that happens to share the name: not ours
	}
	target := lookupWrapTarget(list, name)
	if target == "" {
		fmt.Fprintf(os.Stderr, "testenv: %s has no target in %s\n", name, wrapMarker)
		os.Exit(127)
	}
	// prctl and execve must run on the same thread: the death signal is a
	// per-thread attribute that execve keeps.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: prctl(PR_SET_PDEATHSIG): %v\n", err)
		os.Exit(127)
	}
	if os.Getppid() == 1 {
		os.Exit(1) // the test binary died before the signal was armed
	}
	argv := append([]string{target}, os.Args[1:]...)
	err = syscall.Exec(target, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "testenv: exec %s: %v\n", target, err)
	os.Exit(127)
}

func lookupWrapTarget(list []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte("="))
		if ok && string(k) == name {
			return string(v)
		}
	}
	return ""
}

// wrapBinaries makes, in dir, one death-signal wrapper per name→path target
// and returns the wrappers' paths by name.
func wrapBinaries(dir string, targets map[string]string) (map[string]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("wrap servers: %w", err)
	}
	var list bytes.Buffer
	out := make(map[string]string, len(targets))
	for name, target := range targets {
		w := filepath.Join(dir, name)
		if err := os.Symlink(self, w); err != nil {
			return nil, fmt.Errorf("wrap servers: %w", err)
		}
		fmt.Fprintf(&list, "%s=%s\n", name, target)
		out[name] = w
	}
	if err := os.WriteFile(filepath.Join(dir, wrapMarker), list.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("wrap servers: %w", err)
	}
	return out, nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// waitStopped waits until every thread of pid is stopped (true) or none is
// (false): kill(2) returns before a SIGSTOP or SIGCONT has taken effect, and
// a thread already running may still answer a request in between.
func waitStopped(pid int, stopped bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		all, none := true, true
		stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		for _, s := range stats {
			b, err := os.ReadFile(s)
			if err != nil {
				continue // the thread exited
			}
			i := bytes.LastIndexByte(b, ')')
			if i < 0 || i+2 >= len(b) {
				continue
			}
			if st := b[i+2]; st == 'T' || st == 't' {
				none = false
			} else {
				all = false
			}
		}
		if len(stats) == 0 || (stopped && all) || (!stopped && none) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: threads not %s after %v", pid, map[bool]string{true: "stopped", false: "continued"}[stopped], timeout)
		}
		time.Sleep(time.Millisecond)
	}
}
