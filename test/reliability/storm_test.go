package reliability

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

var stormFields = []string{"api_key", "api_secret", "access_token"}

// TestRotationStorm writes many KV v2 versions while socket and file
// readers read without pause: no read may fail, mix two versions, or see
// a version older than one it saw before; the agent must end on the last
// version and leave one version directory behind.
func TestRotationStorm(t *testing.T) {
	testenv.NeedServers(t)
	sz := sizes()
	path := uniquePath("storm")
	putVersion(t, path, 1, stormFields)
	a := startAgent(t, agentOpts{refresh: 100 * time.Millisecond, creds: []string{
		"storm=secret/" + path,
		"stormjson=secret/" + path + ";format=json",
	}})
	a.waitReady(30 * time.Second)
	waitDelivered(t, a, "storm", "stormjson")

	readers := newReaders(t)
	for i := range sz.readersEach {
		name := []string{"storm", "stormjson"}[i%2]
		readers.add(fmtName("socket", i, name), socketReader(socketClient(a.socket), name, stormFields))
	}
	for i := range sz.readersEach {
		if i%2 == 0 {
			readers.add(fmtName("files", i, "storm"), fileReader(filepath.Join(a.secrets, "storm"), stormFields))
		} else {
			readers.add(fmtName("json", i, "stormjson"), jsonReader(filepath.Join(a.secrets, "stormjson"), stormFields))
		}
	}

	// One write every 40 ms against a 100 ms refresh: most polls find a new
	// version, and some find several.
	start := time.Now()
	last := sz.rotations + 1
	for n := 2; n <= last; n++ {
		putVersion(t, path, n, stormFields)
		time.Sleep(40 * time.Millisecond)
		if a.exited() {
			t.Fatalf("agent exited during the storm: %v\n%s", a.waitErr, a.logTail())
		}
	}
	t.Logf("%d rotations in %s", sz.rotations, time.Since(start).Round(time.Millisecond))

	c := socketClient(a.socket)
	if !eventually(5*time.Second, func() bool {
		cr, err := getCredential(c, "storm")
		return err == nil && cr.Version == last
	}) {
		t.Fatalf("agent did not reach version %d within 5 s of the last write\n%s", last, a.logTail())
	}
	time.Sleep(300 * time.Millisecond) // let every reader see the last version
	readers.stop()
	readers.requireClean(t, nil)
	for _, set := range []string{"storm", "stormjson"} {
		reads, versions := readers.totals("-" + set)
		t.Logf("%s: %d reads, %d distinct versions seen by readers", set, reads, len(versions))
		if !versions[last] {
			t.Errorf("%s: no reader saw the last version %d", set, last)
		}
		// The storm must have exercised swaps: at a 100 ms refresh against
		// a 40 ms write pace, far more than a tenth of the versions commit.
		if len(versions) < sz.rotations/10 {
			t.Errorf("%s: readers saw only %d versions of %d: the storm did not exercise rotation", set, len(versions), sz.rotations)
		}
		committed, err := a.metric("credlet_rotations_total", `name="`+set+`"`, `result="committed"`)
		if err != nil {
			t.Error(err)
		} else if committed < float64(len(versions))-1 {
			t.Errorf("%s: credlet_rotations_total committed = %v, fewer than the %d versions readers saw", set, committed, len(versions))
		}
	}
	requireOneVersionDir(t, filepath.Join(a.secrets, "storm"))
	if err := a.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}
}

// waitDelivered waits until every set is written as files (the storm is
// about rotations; readiness is TestReadyMeansDelivered's subject).
func waitDelivered(t *testing.T, a *agentProc, sets ...string) {
	t.Helper()
	for _, set := range sets {
		data := filepath.Join(a.secrets, set, "..data")
		if !eventually(10*time.Second, func() bool { _, err := os.Stat(data); return err == nil }) {
			t.Fatalf("set %s not written as files within 10 s\n%s", set, a.logTail())
		}
	}
}

func fmtName(kind string, i int, set string) string {
	return kind + "-" + string(rune('0'+i)) + "-" + set
}

// requireOneVersionDir checks a set's directory holds ..data, exactly one
// ..<timestamp> version directory, and no temporary link.
func requireOneVersionDir(t *testing.T, setDir string) {
	t.Helper()
	entries, err := os.ReadDir(setDir)
	if err != nil {
		t.Fatal(err)
	}
	var versions, other []string
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == "..data":
		case strings.HasPrefix(n, "..") && e.IsDir():
			versions = append(versions, n)
		case strings.HasPrefix(n, ".."):
			other = append(other, n)
		}
	}
	if len(versions) != 1 || len(other) != 0 {
		t.Errorf("%s: want ..data and one version directory, got versions %v, other %v", setDir, versions, other)
	}
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
