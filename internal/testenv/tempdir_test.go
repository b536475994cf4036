package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// A folder whose pid is gone is swept unless its lock file is still held:
// the owner may live in another PID namespace, where its pid means nothing.
func TestSweepStaleTempDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := dead.Process.Pid // exited and reaped: kill(pid, 0) fails

	mk := func(name string, lock bool) (string, *os.File) {
		d := filepath.Join(tmp, fmt.Sprintf("%s%d-%s", tempPrefix, pid, name))
		if err := os.MkdirAll(filepath.Join(d, "vault-1"), 0o700); err != nil {
			t.Fatal(err)
		}
		if !lock {
			return d, nil
		}
		f, err := os.OpenFile(filepath.Join(d, lockName), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return d, f
	}
	held, f := mk("held", true)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	released, _ := mk("released", true)
	noLock, _ := mk("nolock", false)

	sweepStaleTempDirs()

	if _, err := os.Stat(held); err != nil {
		t.Errorf("a folder whose lock is held was swept: %v", err)
	}
	for _, d := range []string{released, noLock} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s: stale folder left behind (err %v)", filepath.Base(d), err)
		}
	}
}

// The process folder holds its lock while a server folder is in it and is
// removed with the last one.
func TestDataDirLock(t *testing.T) {
	a, err := newDataDir("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newDataDir("b")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(a)
	if !owned(root, 0) {
		t.Fatal("process folder not locked while servers run")
	}
	if err := removeDataDir(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, lockName)); err != nil {
		t.Fatalf("lock file gone while a server folder remains: %v", err)
	}
	if err := removeDataDir(b); err != nil {
		t.Fatal(err)
	}
	// Servers this package's TestMain started may still be in the folder.
	entries, err := os.ReadDir(root)
	if err == nil && len(entries) == 1 && entries[0].Name() == lockName {
		t.Fatal("process folder left with only its lock file after the last server")
	}
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}
