// Package refusedpeer makes a test binary the hostile peer of a Unix
// socket: a process under a uid the server refuses (uid 65534, let through
// the socket file by gid 0) that opens many connections and sends nothing
// on them. The socket server's and the agent's flood tests share it.
//
// A test package calls Main first in its TestMain; a test copies its own
// binary with Binary and starts the flood with Flood.
package refusedpeer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	socketEnv = "CREDLET_REFUSED_PEER_SOCKET"
	connsEnv  = "CREDLET_REFUSED_PEER_CONNS"
)

// Main runs the flood and exits when this process was started by Flood;
// otherwise it returns at once.
func Main() {
	path := os.Getenv(socketEnv)
	if path == "" {
		return
	}
	n, err := strconv.Atoi(os.Getenv(connsEnv))
	if err != nil || n <= 0 {
		fmt.Printf("error %s=%q: want a positive count\n", connsEnv, os.Getenv(connsEnv))
		os.Exit(2)
	}
	os.Exit(hold(path, n))
}

// hold opens n connections to the socket, sends nothing, prints
// "holding N failed M" and keeps them until stdin closes. A blocking
// connect(2) waits while the listener's backlog is full, as a patient
// attacker would.
func hold(path string, n int) int {
	var fds []int
	failed := 0
	for len(fds) < n && failed < 100 {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Printf("error socket: %v\n", err)
			return 1
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		if errors.Is(err, unix.EAGAIN) {
			_ = unix.Close(fd)
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			_ = unix.Close(fd)
			failed++
			continue
		}
		fds = append(fds, fd)
		if len(fds)%500 == 0 {
			fmt.Printf("connected %d\n", len(fds))
		}
	}
	fmt.Printf("holding %d failed %d\n", len(fds), failed)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// Binary copies the running test binary into a fresh directory another
// uid can read, and returns its path. Running a process under another uid
// needs root: without it the test fails under CI and is skipped elsewhere.
func Binary(t testing.TB) string {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test runs a peer under another uid and needs root (CI runs as root)")
		}
		t.Skip("needs root to run a peer under another uid")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A short path under /tmp: t.TempDir's can outgrow a socket address.
	dir, err := os.MkdirTemp("", "peer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "peer.test")
	if err := os.WriteFile(bin, in, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// Flood starts bin (from Binary) as uid 65534, gid 0, holding n idle
// connections to socket, and returns once it holds all of them. stop
// closes them and waits for the process; it is also registered with
// t.Cleanup. An error says how far the peer got: a server that stops
// accepting leaves it short of n.
func Flood(t testing.TB, bin, socket string, n int, within time.Duration) (stop func(), err error) {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), socketEnv+"="+socket, connsEnv+"="+strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 0}, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	defer func() { // keep the pipe drained whatever happens below
		go func() {
			for range lines {
			}
		}()
	}()
	last := "nothing"
	timeout := time.After(within)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				stop()
				return nil, fmt.Errorf("the refused peer ended after %q", last)
			}
			last = l
			if !strings.HasPrefix(l, "holding ") {
				continue
			}
			if l != fmt.Sprintf("holding %d failed 0", n) {
				stop()
				return nil, fmt.Errorf("the refused peer could not open its %d connections: %q", n, l)
			}
			return stop, nil
		case <-timeout:
			stop()
			return nil, fmt.Errorf("the refused peer could not open %d connections within %v (last: %q): the server stopped accepting", n, within, last)
		}
	}
}

// Stats reads the open descriptors and the resident set of a process
// (pid 0: this one).
func Stats(t testing.TB, pid int) (fds int, rss int64) {
	t.Helper()
	proc := "/proc/self"
	if pid != 0 {
		proc = "/proc/" + strconv.Itoa(pid)
	}
	es, err := os.ReadDir(proc + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return len(es), kb << 10
		}
	}
	t.Fatalf("no VmRSS in %s/status", proc)
	return 0, 0
}
