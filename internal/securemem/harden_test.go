package securemem

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// helper runs this test binary in helper mode and returns its key=value
// output. With cred it runs under another user: the binary is copied where
// that user can execute it.
func helper(t *testing.T, mode string, cred *syscall.Credential) map[string]string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if os.Getuid() != 0 {
			t.Skip("needs root to run a helper under another UID")
		}
		// t.TempDir's parent is 0700; this directory must be reachable.
		dir, err := os.MkdirTemp("", "credlet-securemem-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "helper.test")
		copyFile(t, exe, dst)
		exe = dst
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, out)
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	t.Logf("helper %s: %s", mode, strings.TrimSpace(string(out)))
	return kv
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestHarden(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		wantLock string
	}{
		{name: "without mlockall", mode: "harden", wantLock: "false"},
		{name: "with mlockall", mode: "harden-lockall", wantLock: "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantLock == "true" && !hasCapIPCLock() {
				t.Skip("needs CAP_IPC_LOCK")
			}
			kv := helper(t, tt.mode, nil)
			want := map[string]string{
				"dumpable_before":    "true",
				"dumpable_after":     "false",
				"report_nondumpable": "true",
				"report_nocore":      "true",
				"core_cur":           "0",
				"core_max":           "0",
				"report_lockedall":   tt.wantLock,
			}
			for k, v := range want {
				if kv[k] != v {
					t.Errorf("%s = %q, want %q", k, kv[k], v)
				}
			}
			if tt.wantLock == "true" && (kv["vmlck_kb"] == "0" || kv["vmlck_kb"] == "") {
				t.Errorf("mlockall reported success but VmLck is %q kB", kv["vmlck_kb"])
			}
			// MCL_ONFAULT: locking everything must not fault in the Go
			// runtime's reservations (that took the agent to 160 MiB).
			if rss, _ := strconv.Atoi(kv["vmrss_kb"]); rss <= 0 || rss > 64<<10 {
				t.Errorf("VmRSS %s kB after Harden: want a small process (< 64 MiB)", kv["vmrss_kb"])
			}
		})
	}
}

func TestDisableSecretmem(t *testing.T) {
	kv := helper(t, "disabled", nil)
	if kv["kind"] != "locked" || kv["secretmem_bytes"] != "0" {
		t.Fatalf("with secretmem disabled: kind %q secretmem_bytes %q, want locked and 0", kv["kind"], kv["secretmem_bytes"])
	}
}

// TestUnprivilegedWithoutMemlock: a process that may lock nothing still gets
// working buffers, counted as unlocked, and Harden does not try mlockall.
func TestUnprivilegedWithoutMemlock(t *testing.T) {
	kv := helper(t, "unlocked", &syscall.Credential{Uid: 65534, Gid: 65534})
	if kv["kind"] != "unlocked" {
		t.Errorf("kind %q, want unlocked", kv["kind"])
	}
	if kv["unlocked_bytes"] == "0" || kv["locked_bytes"] != "0" || kv["secretmem_bytes"] != "0" {
		t.Errorf("stats unlocked=%s locked=%s secretmem=%s: want only unlocked bytes",
			kv["unlocked_bytes"], kv["locked_bytes"], kv["secretmem_bytes"])
	}
	if kv["report_lockedall"] != "false" || kv["lockall_err_set"] != "true" {
		t.Errorf("Harden(true) without privilege: lockedall=%s err_set=%s, want false/true",
			kv["report_lockedall"], kv["lockall_err_set"])
	}
}
