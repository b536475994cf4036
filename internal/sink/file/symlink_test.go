package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// outsideDir is a directory outside the secrets directory, with a file and
// a ".."-named directory in it that nothing may touch.
func outsideDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "api_key"), []byte("FAKE-planted"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(d, "..precious"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o751); err != nil {
		t.Fatal(err)
	}
	return d
}

// checkOutsideUntouched fails if anything under d changed.
func checkOutsideUntouched(t *testing.T, d string) {
	t.Helper()
	fi, err := os.Stat(d)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o751 {
		t.Errorf("outside directory mode changed to %v", fi.Mode().Perm())
	}
	if got := strings.Join(listDir(t, d), " "); got != "..precious api_key" {
		t.Errorf("outside directory now holds %q: the sink wrote or removed outside --secrets-dir", got)
	}
	if b, err := os.ReadFile(filepath.Join(d, "api_key")); err != nil || string(b) != "FAKE-planted" {
		t.Errorf("outside file changed: %q %v", b, err)
	}
}

// checkSetDir checks that the set directory is a real directory whose
// ..data names a version directory inside it, holding version v.
func checkSetDir(t *testing.T, setDir string, v int, field, want string) {
	t.Helper()
	fi, err := os.Lstat(setDir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("%s: %v, %v: want a directory", setDir, fi.Mode(), err)
	}
	target, err := os.Readlink(filepath.Join(setDir, dataLink))
	if err != nil || !isVersionDir(target) {
		t.Fatalf("..data -> %q, %v: want a version directory beside it", target, err)
	}
	if fi, err := os.Lstat(filepath.Join(setDir, target)); err != nil || !fi.IsDir() {
		t.Fatalf("..data target %s is not a directory in the set dir: %v", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(setDir, field)); err != nil || string(b) != want {
		t.Fatalf("%s = %q, %v; want %q", field, b, err, want)
	}
}

// TestPlantedSetDirSymlink: <secrets-dir>/<name> planted as a symlink to
// another directory before the agent starts. The sink replaces the link
// with its own directory, says so once, and writes nothing outside.
func TestPlantedSetDirSymlink(t *testing.T) {
	for _, once := range []bool{false, true} {
		name := "run"
		if once {
			name = "once"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Options{}, "acme=secret/acme")
			outside := outsideDir(t)
			if err := os.MkdirAll(e.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			setDir := filepath.Join(e.dir, "acme")
			if err := os.Symlink(outside, setDir); err != nil {
				t.Fatal(err)
			}
			commitFields(t, e.st, "acme", 1, "api_key", "FAKE-v1")
			if once {
				if err := e.sink.WriteAll(); err != nil {
					t.Fatal(err)
				}
			} else {
				e.run(t)
				waitFor(t, func() bool { return e.sink.writtenVersion("acme") == 1 })
			}
			checkOutsideUntouched(t, outside)
			checkSetDir(t, setDir, 1, "api_key", "FAKE-v1")
			if n := strings.Count(e.logs.String(), "is a symlink"); n != 1 {
				t.Errorf("%d log lines about the planted symlink, want 1:\n%s", n, e.logs.String())
			}
		})
	}
}

// TestPlantedDataLink: while the agent runs, its ..data is replaced by a
// link to a planted "..evil" link pointing outside, and a field link is
// pointed outside too. The next version is written inside the set dir,
// the planted links are removed without following them, and nothing
// outside changes.
func TestPlantedDataLink(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	outside := outsideDir(t)
	commitFields(t, e.st, "acme", 1, "api_key", "FAKE-v1")
	e.run(t)
	e.waitVersion(t, "acme", 1)
	setDir := filepath.Join(e.dir, "acme")
	if err := os.Symlink(outside, filepath.Join(setDir, "..evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..evil", filepath.Join(setDir, "..tmp_planted")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(setDir, "..tmp_planted"), filepath.Join(setDir, dataLink)); err != nil {
		t.Fatal(err)
	}
	commitFields(t, e.st, "acme", 2, "api_key", "FAKE-v2")
	e.waitVersion(t, "acme", 2)
	waitFor(t, func() bool { _, err := os.Lstat(filepath.Join(setDir, "..evil")); return os.IsNotExist(err) })
	checkOutsideUntouched(t, outside)
	checkSetDir(t, setDir, 2, "api_key", "FAKE-v2")
}

// TestTamperedDataLinkRepaired: ..data pointed elsewhere while no new
// version comes: the sink notices at its next check and rewrites the
// current version, with one log line.
func TestTamperedDataLinkRepaired(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	outside := outsideDir(t)
	commitFields(t, e.st, "acme", 1, "api_key", "FAKE-v1")
	e.run(t)
	e.waitVersion(t, "acme", 1)
	setDir := filepath.Join(e.dir, "acme")
	tmp := filepath.Join(setDir, "..tmp_planted")
	if err := os.Symlink(outside, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(setDir, dataLink)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.clock.Advance(checkInterval)
		if t, err := os.Readlink(filepath.Join(setDir, dataLink)); err == nil && isVersionDir(t) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("..data still points elsewhere 10s after the tampering")
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkOutsideUntouched(t, outside)
	checkSetDir(t, setDir, 1, "api_key", "FAKE-v1")
	waitFor(t, func() bool { return strings.Contains(e.logs.String(), "changed by someone else") })
}

// TestVersionsNotBlockedByWrite: Versions (what /readyz asks) answers at
// once while a write is in progress (files written, fsync pending).
func TestVersionsNotBlockedByWrite(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	commitFields(t, e.st, "acme", 1, "api_key", "FAKE-v1")
	e.run(t)
	e.waitVersion(t, "acme", 1)
	entered, release := make(chan struct{}), make(chan struct{})
	testHookBeforeSwap = func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}
	t.Cleanup(func() { testHookBeforeSwap = nil })
	defer close(release)
	commitFields(t, e.st, "acme", 2, "api_key", "FAKE-v2")
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the write of version 2 never started")
	}
	got := make(chan map[string]int, 1)
	go func() { got <- e.sink.Versions() }()
	select {
	case v := <-got:
		if v["acme"] != 1 {
			t.Fatalf("Versions during the write = %v, want acme 1", v)
		}
	case <-time.After(100 * time.Millisecond):
		t.Fatal("Versions blocked behind a write in progress")
	}
}

// TestReplacedSetDirRepaired: the set directory is moved away and a
// look-alike put in its place (same version directory name, other files):
// the sink notices at its next check and writes the current version again.
func TestReplacedSetDirRepaired(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	commitFields(t, e.st, "acme", 1, "api_key", "FAKE-v1")
	e.run(t)
	e.waitVersion(t, "acme", 1)
	setDir := filepath.Join(e.dir, "acme")
	vd := versionDirs(t, setDir)[0]
	if err := os.Rename(setDir, filepath.Join(e.dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(setDir, vd), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(setDir, vd, "api_key"), []byte("FAKE-planted"), 0o400); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{dataLink: vd, "api_key": dataLink + "/api_key"} {
		if err := os.Symlink(target, filepath.Join(setDir, link)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.clock.Advance(checkInterval)
		if b, err := os.ReadFile(filepath.Join(setDir, "api_key")); err == nil && string(b) == "FAKE-v1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the look-alike set directory still serves its own files 10s later")
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkSetDir(t, setDir, 1, "api_key", "FAKE-v1")
}
