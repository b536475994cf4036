package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envStage tells a re-executed copy of the program which part it plays:
// stageInit is PID 1 of the new namespaces, stageMain the program proper.
const (
	envStage  = "CREDLET_CLUSTER_STAGE"
	envRunID  = "CREDLET_CLUSTER_RUN"
	stageInit = "init"
	stageMain = "main"
	// envHostListeners is how many listening sockets on this machine's
	// 127.0.0.1 the program inherits, from descriptor 3 on.
	envHostListeners = "CREDLET_CLUSTER_HOST_LISTENERS"
)

// IsolateOption changes what Isolate sets up.
type IsolateOption func(*isolateOptions)

type isolateOptions struct{ hostListeners int }

// WithHostListeners has Isolate open n TCP listeners on free ports of this
// machine's 127.0.0.1, in the machine's own network namespace, before it
// creates the run's; the program inside gets them from HostListeners and
// can serve on them (make cluster forwards the apiserver and Vault there).
func WithHostListeners(n int) IsolateOption {
	return func(o *isolateOptions) { o.hostListeners = n }
}

// HostListeners returns the listeners WithHostListeners asked for, inside
// the run's namespaces; they accept connections made on this machine's
// loopback.
func HostListeners() ([]net.Listener, error) {
	n, _ := strconv.Atoi(os.Getenv(envHostListeners))
	var out []net.Listener
	for i := range n {
		f := os.NewFile(uintptr(3+i), fmt.Sprintf("host-listener-%d", i))
		ln, err := net.FileListener(f)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("host listener %d: %w", i, err)
		}
		out = append(out, ln)
	}
	return out, nil
}

// ErrIsolate is wrapped by every error Isolate returns: the namespaces the
// cluster needs could not be made (not root, or no CAP_SYS_ADMIN).
var ErrIsolate = errors.New("cluster: cannot create the run's namespaces")

// Isolated reports whether this process runs inside the namespaces Isolate
// made.
func Isolated() bool { return os.Getenv(envStage) == stageMain }

// RunID names this run (the outer process's pid): it keys the run's cgroup
// root, so that runs side by side and stale runs never meet.
func RunID() string { return os.Getenv(envRunID) }

// Isolate runs this program again inside new PID, network and mount
// namespaces, and returns there (nil). The calling process only waits: it
// passes SIGINT, SIGTERM and SIGHUP on, removes the run's cgroups once the
// program has ended, and exits with the program's exit code; it returns only
// with an error wrapping ErrIsolate when the namespaces cannot be made.
//
// Inside, PID 1 is a small init (this program again) that mounts a fresh
// /proc, makes every mount private, brings up lo, starts the program proper,
// reaps orphans (containerd's shims end up there), and when the program ends
// kills every process left in the namespace. So nothing the run started can
// outlive it, mounts included (they belong to the run's mount namespace),
// whatever way the program ends: the kernel kills init when the waiting
// process dies (parent-death signal), and the namespace with it.
//
// The program gets its own TMPDIR (removed afterwards): inside, pids are
// those of the run's PID namespace, so a sweep of temp folders named after
// dead pids (internal/testenv's) must not see other processes' folders.
//
// Network: the namespace has only lo and what the cluster creates (its CNI
// bridge and the pods' veths). Nothing listens on the machine's own
// interfaces and nothing can leave the machine.
func Isolate(opts ...IsolateOption) error {
	var o isolateOptions
	for _, opt := range opts {
		opt(&o)
	}
	switch os.Getenv(envStage) {
	case stageMain:
		return nil
	case stageInit:
		os.Exit(runInit())
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (euid %d)", ErrIsolate, os.Geteuid())
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIsolate, err)
	}
	runID := strconv.Itoa(os.Getpid())
	sweepStaleCgroups()
	sweepStaleTemp()
	// The run's own TMPDIR: inside, pids are those of the run's PID
	// namespace, so code that sweeps temp folders of dead processes by pid
	// (internal/testenv does) must not see other processes' folders.
	tmp, err := os.MkdirTemp("", "credlet-run-"+runID+"-")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIsolate, err)
	}
	defer os.RemoveAll(tmp)
	var files []*os.File
	for range o.hostListeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("%w: host listener: %v", ErrIsolate, err)
		}
		f, err := ln.(*net.TCPListener).File()
		_ = ln.Close()
		if err != nil {
			return fmt.Errorf("%w: host listener: %v", ErrIsolate, err)
		}
		files = append(files, f)
	}
	cmd := &exec.Cmd{
		Path: self,
		Args: os.Args,
		Env: withEnv(os.Environ(), envStage+"="+stageInit, envRunID+"="+runID,
			envHostListeners+"="+strconv.Itoa(len(files)), "TMPDIR="+tmp),
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: files,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	err = cmd.Start()
	for _, f := range files {
		_ = f.Close()
	}
	if err != nil {
		signal.Stop(sigs)
		return fmt.Errorf("%w: %v", ErrIsolate, err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	_ = cmd.Wait()
	removeCgroups(runID)
	_ = os.RemoveAll(tmp)
	os.Exit(exitCode(cmd.ProcessState.Sys().(syscall.WaitStatus)))
	return nil
}

// withEnv returns env with each KEY=value of set replacing any entry for
// that KEY (a duplicate would leave the first one in force).
func withEnv(env []string, set ...string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for _, s := range set {
			if sk, _, _ := strings.Cut(s, "="); sk == k {
				replaced = true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 1
}

// runInit is PID 1 of the run's namespaces.
func runInit() int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "cluster init: "+format+"\n", a...)
		return 125
	}
	if os.Getpid() != 1 {
		return fail("not PID 1 of a new PID namespace (pid %d)", os.Getpid())
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("make mounts private: %v", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail("mount /proc: %v", err)
	}
	if err := linkUp("lo"); err != nil {
		return fail("lo up: %v", err)
	}
	if err := unix.Sethostname([]byte("credlet-node")); err != nil {
		return fail("hostname: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail("%v", err)
	}
	env := withEnv(os.Environ(), envStage+"="+stageMain)
	fds := []uintptr{0, 1, 2}
	n, _ := strconv.Atoi(os.Getenv(envHostListeners))
	for i := range n {
		fds = append(fds, uintptr(3+i))
	}
	pid, err := syscall.ForkExec(self, os.Args, &syscall.ProcAttr{
		Env:   env,
		Files: fds,
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return fail("start %s: %v", self, err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	code := 1
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fail("wait: %v", err)
		}
		if p == pid {
			code = exitCode(ws)
			break
		}
	}
	// Everything else in the namespace: containerd's shims, the
	// containers, any server the program left.
	_ = syscall.Kill(-1, syscall.SIGKILL)
	for {
		if _, err := syscall.Wait4(-1, nil, 0, nil); err == syscall.ECHILD {
			break
		}
	}
	return code
}

// linkUp sets the IFF_UP flag of interface name.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// cgroupBase is where the v1 hierarchies are mounted.
const cgroupBase = "/sys/fs/cgroup"

// cgroupPrefix starts the name of each run's cgroup root, followed by RunID.
const cgroupPrefix = "credlet-cluster-"

// CgroupRoot is the kubelet's cgroup root for this run.
func CgroupRoot() string { return "/" + cgroupPrefix + RunID() }

// removeCgroups removes the run's cgroup tree in every hierarchy, deepest
// first; cgroups of processes that are gone are empty and rmdir works.
func removeCgroups(runID string) {
	hier, _ := filepath.Glob(filepath.Join(cgroupBase, "*"))
	for _, h := range hier {
		root := filepath.Join(h, cgroupPrefix+runID)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// sweepStaleCgroups removes the cgroup roots of runs whose waiting process
// is gone (it was killed before it could clean up).
func sweepStaleCgroups() {
	roots, _ := filepath.Glob(filepath.Join(cgroupBase, "*", cgroupPrefix+"*"))
	seen := map[string]bool{}
	for _, r := range roots {
		id := strings.TrimPrefix(filepath.Base(r), cgroupPrefix)
		pid, err := strconv.Atoi(id)
		if err != nil || seen[id] {
			continue
		}
		seen[id] = true
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			removeCgroups(id)
		}
	}
}

// sweepStaleTemp removes the TMPDIRs of runs whose waiting process is gone.
func sweepStaleTemp() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "credlet-run-*"))
	for _, d := range dirs {
		id, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "credlet-run-"), "-")
		if pid, err := strconv.Atoi(id); err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
			unmountBelow(d)
			_ = os.RemoveAll(d)
		}
	}
}
