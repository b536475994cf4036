package reliability

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// TestAgentRestart stops the agent (gracefully, and by SIGKILL), writes a
// new version while it is down, and starts it again on the same
// directories: file readers never fail (the files outlive the process),
// socket readers fail only while no agent is listening and then reconnect,
// the new agent reclaims the socket (a stale one after SIGKILL), and the
// files are replaced by the new version with nothing left over.
func TestAgentRestart(t *testing.T) {
	testenv.NeedServers(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			name := "restart"
			path := uniquePath(name)
			putVersion(t, path, 1, outageFields)
			a := startAgent(t, agentOpts{refresh: time.Second, creds: []string{name + "=secret/" + path}})
			a.waitReady(30 * time.Second)
			waitDelivered(t, a, name)
			readers := newReaders(t)
			sockReaders := newReaders(t)
			for i := range 2 {
				sockReaders.add(fmtName("socket", i, name), socketReader(socketClient(a.socket), name, outageFields))
				readers.add(fmtName("files", i, name), fileReader(filepath.Join(a.secrets, name), outageFields))
			}
			time.Sleep(500 * time.Millisecond)

			down := time.Now()
			err := a.signal(sig, 10*time.Second)
			var ee *exec.ExitError
			switch {
			case sig == syscall.SIGTERM && err != nil:
				t.Fatalf("after SIGTERM the agent must exit 0 within 10 s: %v\n%s", err, a.logTail())
			case sig == syscall.SIGKILL && !errors.As(err, &ee):
				t.Fatalf("after SIGKILL: %v", err)
			}
			_, statErr := os.Lstat(a.socket)
			if sig == syscall.SIGTERM && statErr == nil {
				t.Errorf("socket %s still there after a graceful stop", a.socket)
			}
			if sig == syscall.SIGKILL && statErr != nil {
				t.Logf("note: no stale socket after SIGKILL (%v)", statErr)
			}
			putVersion(t, path, 2, outageFields)
			time.Sleep(500 * time.Millisecond) // readers run against the stopped agent

			b := a.restart()
			b.waitReady(30 * time.Second)
			up := time.Now()
			c := socketClient(b.socket)
			if !eventually(5*time.Second, func() bool {
				cr, err := getCredential(c, name)
				return err == nil && cr.Version == 2
			}) {
				t.Fatalf("restarted agent does not serve version 2\n%s", b.logTail())
			}
			if !eventually(3*time.Second, func() bool {
				v, _, err := readFileSet(filepath.Join(b.secrets, name), outageFields)
				return err == nil && v == 2
			}) {
				t.Fatal("files not replaced by version 2 after the restart")
			}
			time.Sleep(500 * time.Millisecond)
			readers.stop()
			sockReaders.stop()
			readers.requireClean(t, nil)
			// Socket readers may fail only while no agent listened, and must
			// have read again (reconnected) since.
			sockReaders.requireClean(t, func(at time.Time) bool { return at.After(down) && at.Before(up) })
			for _, s := range sockReaders.snapshot() {
				if !s.lastOK.After(up) || !s.versions[2] {
					t.Errorf("socket reader %s did not reconnect to the new agent (last good read %s, versions %v)",
						s.name, s.lastOK.Format("15:04:05.000"), s.versions)
				}
			}
			requireOneVersionDir(t, filepath.Join(b.secrets, name))
			if err := b.signal(syscall.SIGTERM, 10*time.Second); err != nil {
				t.Errorf("restarted agent exit after SIGTERM: %v", err)
			}
		})
	}
}
