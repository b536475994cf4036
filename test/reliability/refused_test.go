package reliability

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/testenv"

	"github.com/credlet/credlet/internal/testenv/refusedpeer"
)

// floodConns is how many connections the refused peer holds at once.
const floodConns = 5000

// TestRefusedPeerFloodAgent: a process under a uid the agent refuses, let
// through the socket file by its group, opens 5,000 connections and sends
// nothing, against a real agent whose descriptor limit is 4096. An allowed
// client is still answered within 100 ms, the agent's descriptors and RSS
// stay bounded, every refusal is counted, the denial log line and the deny
// audit records are summarised, and the agent keeps serving afterwards.
func TestRefusedPeerFloodAgent(t *testing.T) {
	testenv.NeedServers(t)
	bin := refusedpeer.Binary(t)
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
	fdsBefore, rssBefore := refusedpeer.Stats(t, pid)

	stopFlood, err := refusedpeer.Flood(t, bin, a.socket, floodConns, 60*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, a.logTail())
	}

	// connect(2) on a Unix socket succeeds once the connection is queued,
	// so the peer holds all of them before the agent has accepted (and
	// refused) the last few thousand; until then the listen backlog is
	// full and a new connection fails with EAGAIN. Wait for the agent to
	// work through it: on the code before the fix it never does.
	drained := time.Now()
	for n := 0.0; n != floodConns; {
		if time.Since(drained) > 30*time.Second {
			t.Fatalf("the agent refused %v of the %d held connections in 30s\n%s", n, floodConns, a.logTail())
		}
		time.Sleep(10 * time.Millisecond)
		n, _ = a.metric("credlet_socket_denied_total")
	}
	t.Logf("the agent refused all %d connections %v after the peer held them", floodConns, time.Since(drained).Round(time.Millisecond))

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
	fds, rss := refusedpeer.Stats(t, pid)
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
	stopFlood()
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
