package socketapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/credlet/credlet/internal/testenv/refusedpeer"
)

const peerHelperEnv = "CREDLET_SOCKETAPI_PEER_SOCKET"

func TestMain(m *testing.M) {
	refusedpeer.Main()
	if path := os.Getenv(peerHelperEnv); path != "" {
		os.Exit(peerHelper(path))
	}
	os.Exit(m.Run())
}

// peerHelper is the reader running under another UID: one GET, then it
// prints what it got (never the body of a 200: it may hold values).
func peerHelper(path string) int {
	c := unixClient(path)
	resp, err := c.Get("http://agent/v1/credentials/acme")
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			fmt.Println("result=eacces")
		} else {
			fmt.Printf("result=error error=%q\n", err.Error())
		}
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e errorBody
	_ = json.Unmarshal(b, &e)
	fmt.Printf("result=status status=%d code=%s has_fake=%v\n", resp.StatusCode, e.Error.Code, strings.Contains(string(b), "FAKE"))
	return 0
}

// runPeer runs this test binary as a reader under cred and returns its
// key=value output.
func runPeer(t *testing.T, socket string, cred *syscall.Credential) map[string]string {
	t.Helper()
	cmd := exec.Command(refusedpeer.Binary(t), "-test.run=^$")
	cmd.Env = append(os.Environ(), peerHelperEnv+"="+socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer helper: %v\n%s", err, out)
	}
	t.Logf("peer uid %d gid %d: %s", cred.Uid, cred.Gid, strings.TrimSpace(string(out)))
	kv := map[string]string{}
	for _, f := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// TestPeerUnderAnotherUID runs real readers under other UIDs against the
// socket: the kernel's SO_PEERCRED, not anything the reader says, decides.
func TestPeerUnderAnotherUID(t *testing.T) {
	tests := []struct {
		name      string
		allowUIDs []uint32
		allowGIDs []uint32
		cred      syscall.Credential
		want      map[string]string
		wantDeny  bool
	}{
		{
			// gid 0 lets it through the 0750 directory and the 0660
			// socket; the peer check must still refuse uid 65534.
			name: "other uid refused", cred: syscall.Credential{Uid: 65534, Gid: 0},
			want:     map[string]string{"result": "status", "status": "403", "code": "forbidden", "has_fake": "false"},
			wantDeny: true,
		},
		{
			name: "allowed by gid", allowUIDs: []uint32{0}, allowGIDs: []uint32{0}, cred: syscall.Credential{Uid: 65534, Gid: 0},
			want: map[string]string{"result": "status", "status": "200", "has_fake": "true"},
		},
		{
			// Outside the socket's group the file modes already stop it.
			name: "other uid and gid cannot connect", cred: syscall.Credential{Uid: 65534, Gid: 65534},
			want: map[string]string{"result": "eacces"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, func(o *Options) { o.AllowUIDs, o.AllowGIDs = tt.allowUIDs, tt.allowGIDs })
			if err := os.Chmod(filepath.Dir(filepath.Dir(e.path)), 0o755); err != nil {
				t.Fatal(err)
			}
			commitV(t, e.st, "acme", 1)
			kv := runPeer(t, e.path, &tt.cred)
			for k, v := range tt.want {
				if kv[k] != v {
					t.Errorf("%s = %q, want %q", k, kv[k], v)
				}
			}
			before := counterValue(t, e.metrics.SocketDenied)
			e.stop(t)
			var denies []string
			for line := range strings.Lines(e.audit.String()) {
				if strings.Contains(line, `"event":"deny"`) {
					denies = append(denies, line)
				}
			}
			if !tt.wantDeny {
				if len(denies) != 0 {
					t.Fatalf("unexpected deny records: %v", denies)
				}
				return
			}
			if len(denies) != 1 {
				t.Fatalf("%d deny records, want 1:\n%s", len(denies), e.audit.String())
			}
			var rec struct {
				Credential string `json:"credential"`
				Result     string `json:"result"`
				Peer       struct {
					UID uint32 `json:"uid"`
					GID uint32 `json:"gid"`
					PID int32  `json:"pid"`
				} `json:"peer"`
			}
			if err := json.Unmarshal([]byte(denies[0]), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Peer.UID != tt.cred.Uid || rec.Peer.GID != tt.cred.Gid || rec.Peer.PID == 0 || rec.Credential != "acme" || rec.Result != "denied" {
				t.Errorf("deny record %s", denies[0])
			}
			// The probe in startEnv is this (allowed) process: only the
			// helper's connection counts.
			if before != 1 {
				t.Errorf("credlet_socket_denied_total = %v, want 1", before)
			}
			if !strings.Contains(e.logs.String(), `"peer_uid":65534`) {
				t.Errorf("no log line naming the refused peer:\n%s", e.logs.String())
			}
		})
	}
}
