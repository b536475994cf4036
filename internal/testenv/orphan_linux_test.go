package testenv_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/credlet/credlet/internal/testenv"
)

const orphanEnv = "CREDLET_TESTENV_ORPHAN_HELPER"

// runOrphanHelper turns this test binary into TestServersDieWithTestBinary's
// child when it was started as one (it then never returns).
func runOrphanHelper() {
	if os.Getenv(orphanEnv) != "" {
		orphanHelper()
	}
}

// orphanHelper runs in a child test binary: it starts Vault and Kube, prints
// the pids of its child processes and waits to be killed.
func orphanHelper() {
	var g errgroup.Group
	g.Go(func() error { _, err := testenv.StartVault(context.Background()); return err })
	g.Go(func() error { _, err := testenv.StartKube(context.Background()); return err })
	if err := g.Wait(); err != nil {
		fmt.Printf("ERR %v\n", err)
		os.Exit(1)
	}
	var pids []string
	for _, p := range childPIDs(os.Getpid()) {
		pids = append(pids, strconv.Itoa(p))
	}
	fmt.Printf("PIDS %s\n", strings.Join(pids, " "))
	select {}
}

// TestServersDieWithTestBinary SIGKILLs a test binary that started servers,
// as `go test -timeout` or an OOM kill would (no cleanup runs), and checks
// that every server it started goes away with it.
func TestServersDieWithTestBinary(t *testing.T) {
	testenv.NeedServers(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	cmd.Stderr = os.Stderr
	// The helper itself must not outlive this test binary (say, on -timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	helper := cmd.Process.Pid
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// Its data dirs: the next testenv process would sweep them.
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("credlet-testenv-%d-*", helper)))
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	})

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "PIDS ") || strings.HasPrefix(l, "ERR ") {
				lines <- l
				return
			}
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(2 * time.Minute):
		t.Fatal("helper did not start its servers in 2 min")
	}
	if !strings.HasPrefix(line, "PIDS ") {
		t.Fatalf("helper: %q", line)
	}
	var pids []int
	var names []string
	for _, f := range strings.Fields(strings.TrimPrefix(line, "PIDS ")) {
		p, _ := strconv.Atoi(f)
		pids = append(pids, p)
		names = append(names, procName(p))
	}
	slices.Sort(names)
	// etcd and kube-apiserver by name: the death-signal wrapper exec'd them.
	if want := []string{"etcd", "kube-apiserver", "vault"}; !slices.Equal(names, want) {
		t.Fatalf("helper's children = %q, want %q", names, want)
	}

	if err := syscall.Kill(helper, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for alive(p) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d (%s) still running 10 s after the test binary was killed", p, procName(p))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			p, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
			out = append(out, p)
		}
	}
	return out
}

func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// alive reports whether pid runs (a zombie awaiting its reaper counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	f := strings.Fields(rest)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
