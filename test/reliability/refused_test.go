package reliability

import (
	"bufio"
	"encoding/json"
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

	"github.com/credlet/credlet/internal/testenv"
)

// floodHelperEnv makes this test binary the refused peer of
// TestRefusedPeerFloodAgent (see TestMain).
const floodHelperEnv = "CREDLET_RELIABILITY_FLOOD_SOCKET"

// floodConns is how many connections the refused peer holds at once.
const floodConns = 5000

// floodHelper opens floodConns connections to the socket, sends nothing,
// prints "holding N failed M", and keeps them until stdin closes. A
// blocking connect(2) waits while the listener's backlog is full.
func floodHelper(path string) int {
	var fds []int
	failed := 0
	for len(fds) < floodConns && failed < 100 {
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
		if len(fds)%1000 == 0 {
			fmt.Printf("connected %d\n", len(fds))
		}
	}
	fmt.Printf("holding %d failed %d\n", len(fds), failed)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// procStats reads a process's open descriptors and resident set.
func procStats(t *testing.T, pid int) (fds int, rss int64) {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			rss = kb << 10
		}
	}
	return len(es), rss
}

// TestRefusedPeerFloodAgent: a process under a uid the agent refuses, let
// through the socket file by its group, opens 5,000 connections and sends
// nothing, against a real agent whose descriptor limit is 4096. An allowed
// client is still answered within 100 ms, the agent's descriptors and RSS
// stay bounded, every refusal is counted, the denial log line and the deny
// audit records are summarised, and the agent keeps serving afterwards.
func TestRefusedPeerFloodAgent(t *testing.T) {
	testenv.NeedServers(t)
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test runs a peer under another uid and needs root (CI runs as root)")
		}
		t.Skip("needs root to run a peer under another uid")
	}
	name := "flood"
	path := uniquePath(name)
	putVersion(t, path, 1, outageFields)
	a := startAgent(t, agentOpts{creds: []string{name + "=secret/" + path}})
	a.waitReady(30 * time.Second)
	pid := a.cmd.Process.Pid
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 4096, Max: 4096}, nil); err != nil {
		t.Fatal(err)
	}
	// uid 65534 with gid 0 passes the 0750 directory and the 0660 socket.
	if err := os.Chmod(a.dir, 0o750); err != nil {
		t.Fatal(err)
	}
	good := socketClient(a.socket)
	if _, err := getCredential(good, name); err != nil {
		t.Fatal(err)
	}
	fdsBefore, rssBefore := procStats(t, pid)

	bin := copyTestBinary(t)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), floodHelperEnv+"="+a.socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 0}, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	last := "nothing"
	timeout := time.After(60 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("flood helper ended after %q", last)
			}
			last = l
			if strings.HasPrefix(l, "holding ") {
				break wait
			}
		case <-timeout:
			t.Fatalf("the refused peer could not open %d connections in 60s (last: %q): the agent stopped accepting\n%s", floodConns, last, a.logTail())
		}
	}
	if last != fmt.Sprintf("holding %d failed 0", floodConns) {
		t.Fatalf("flood helper: %q", last)
	}

	var worst time.Duration
	for range 20 {
		c := socketClient(a.socket)
		start := time.Now()
		cr, err := getCredential(c, name)
		worst = max(worst, time.Since(start))
		c.CloseIdleConnections()
		if err != nil || cr.Version != 1 {
			t.Fatalf("allowed read during the flood: %v (version %d)", err, cr.Version)
		}
	}
	fds, rss := procStats(t, pid)
	t.Logf("during the flood: slowest allowed read %v; agent descriptors %d (before %d), RSS %d KiB (before %d KiB)",
		worst, fds, fdsBefore, rss>>10, rssBefore>>10)
	if worst > 100*time.Millisecond {
		t.Errorf("allowed read during the flood took up to %v, want <= 100ms", worst)
	}
	if fds > fdsBefore+100 {
		t.Errorf("agent descriptors %d during the flood (%d before)", fds, fdsBefore)
	}
	rssLimit := int64(32 << 20)
	if raceEnabled { // the race detector's shadow memory
		rssLimit = 64 << 20
	}
	if rss-rssBefore > rssLimit {
		t.Errorf("agent RSS grew by %d MiB during the flood", (rss-rssBefore)>>20)
	}
	if n, err := a.metric("credlet_socket_denied_total"); err != nil || n != floodConns {
		t.Errorf("credlet_socket_denied_total = %v, %v; want %d", n, err, floodConns)
	}
	_ = stdin.Close()
	_ = cmd.Wait()
	if _, err := getCredential(good, name); err != nil {
		t.Fatalf("read after the flood: %v", err)
	}
	if err := a.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	logs, _ := os.ReadFile(a.logPath)
	if n := strings.Count(string(logs), `"msg":"socket peer not allowed"`); n > 2 {
		t.Errorf("%d log lines for refused connections, want them summarised", n)
	}
	if !strings.Contains(string(logs), `"msg":"socket peer not allowed, repeated"`) {
		t.Errorf("no summary line for the repeated refusals:\n%s", a.logTail())
	}
	trail, err := os.ReadFile(filepath.Join(a.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	records, total := 0, 0
	for l := range strings.Lines(string(trail)) {
		if !strings.Contains(l, `"event":"deny"`) {
			continue
		}
		var r struct {
			Count int `json:"count"`
			Peer  struct {
				UID uint32 `json:"uid"`
			} `json:"peer"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Peer.UID != 65534 {
			t.Errorf("deny record for uid %d", r.Peer.UID)
		}
		records++
		total += max(r.Count, 1)
	}
	if records == 0 || records > 3 || total != floodConns {
		t.Errorf("%d deny records counting %d refusals; want a few counting %d", records, total, floodConns)
	}
}

// copyTestBinary copies this test binary where another uid can run it.
func copyTestBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "relbin")
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
	bin := filepath.Join(dir, "flood.test")
	if err := os.WriteFile(bin, in, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}
