package socketapi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/testenv/refusedpeer"
)

// floodConns is how many connections the refused peer opens at once.
const floodConns = 5000

// TestRefusedPeerFlood: a peer under a refused UID (let through the socket
// file by its group) opens 5,000 connections and sends nothing. The server
// (this process, with a 4096-descriptor soft limit as a container may
// have) keeps answering an allowed client within 100 ms, its descriptors
// and RSS stay bounded, the denial log line and the deny audit records are
// summarised, and every refusal is counted.
func TestRefusedPeerFlood(t *testing.T) {
	bin := refusedpeer.Binary(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < floodConns+1000 {
		t.Fatalf("RLIMIT_NOFILE hard limit %d: the refused peer needs %d descriptors", lim.Max, floodConns+1000)
	}
	low := lim
	low.Cur = 4096
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) })

	e := startEnv(t, nil)
	if err := os.Chmod(filepath.Dir(filepath.Dir(e.path)), 0o755); err != nil {
		t.Fatal(err)
	}
	commitV(t, e.st, "acme", 1)
	good := unixClient(e.path)
	if a := do(t, good, "GET", "/v1/credentials/acme", nil, nil); a.status != 200 {
		t.Fatalf("allowed read before the flood: %d %s", a.status, a.body)
	}
	fdsBefore, rssBefore := refusedpeer.Stats(t, 0)

	stopFlood, err := refusedpeer.Flood(t, bin, e.path, floodConns, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	// While the refused connections are held: an allowed client is
	// answered promptly, on a new connection each time.
	// The peer holds its connections once they are queued, before the
	// server has accepted (and refused) the last of them; until then the
	// backlog is full and a new connect(2) fails with EAGAIN. Wait for the
	// server to work through it.
	drained := time.Now()
	for counterValue(t, e.metrics.SocketDenied) != floodConns {
		if time.Since(drained) > 30*time.Second {
			t.Fatalf("the server refused %v of the %d held connections in 30s", counterValue(t, e.metrics.SocketDenied), floodConns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the server refused all %d connections %v after the peer held them", floodConns, time.Since(drained).Round(time.Millisecond))

	var worst time.Duration
	for range 20 {
		c := unixClient(e.path)
		start := time.Now()
		a := do(t, c, "GET", "/v1/credentials/acme", nil, nil)
		worst = max(worst, time.Since(start))
		c.CloseIdleConnections()
		if a.status != 200 {
			t.Fatalf("allowed read during the flood: %d %s", a.status, a.body)
		}
	}
	fdsDuring, rssDuring := refusedpeer.Stats(t, 0)
	t.Logf("during the flood: slowest allowed read %v, descriptors %d (before %d), RSS %d KiB (before %d KiB)",
		worst, fdsDuring, fdsBefore, rssDuring>>10, rssBefore>>10)
	if worst > 100*time.Millisecond {
		t.Errorf("allowed read during the flood took up to %v, want <= 100ms", worst)
	}
	if fdsDuring > fdsBefore+100 {
		t.Errorf("open descriptors %d during the flood (%d before): refused connections are held", fdsDuring, fdsBefore)
	}
	// The race detector's shadow memory multiplies what every accepted
	// connection costs, even one closed at once.
	rssLimit := int64(24 << 20)
	if raceEnabled {
		rssLimit = 48 << 20
	}
	if grew := rssDuring - rssBefore; grew > rssLimit {
		t.Errorf("RSS grew by %d MiB during the flood", grew>>20)
	}
	if got := counterValue(t, e.metrics.SocketDenied); got != floodConns {
		t.Errorf("credlet_socket_denied_total = %v, want %d", got, floodConns)
	}
	stopFlood()
	e.stop(t)

	var warns int
	for l := range strings.Lines(e.logs.String()) {
		if strings.Contains(l, `"msg":"socket peer not allowed"`) {
			warns++
		}
	}
	if warns > 2 {
		t.Errorf("%d log lines for refused connections, want them summarised", warns)
	}
	if !strings.Contains(e.logs.String(), `"count":`) {
		t.Errorf("no summary of refused connections in the log:\n%.2000s", e.logs.String())
	}
	var records, total int
	for l := range strings.Lines(e.audit.String()) {
		if !strings.Contains(l, `"event":"deny"`) {
			continue
		}
		var r struct {
			Count int `json:"count"`
			Peer  struct {
				UID uint32 `json:"uid"`
				GID uint32 `json:"gid"`
			} `json:"peer"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Peer.UID != 65534 || r.Peer.GID != 0 {
			t.Errorf("deny record for the wrong peer: %s", l)
		}
		records++
		total += max(r.Count, 1)
	}
	if records == 0 || records > 3 || total != floodConns {
		t.Errorf("%d deny records counting %d refusals, want a few counting %d:\n%.3000s", records, total, floodConns, e.audit.String())
	}
}
