package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// agentProc is a running credlet-agent or Vault Agent.
type agentProc struct {
	*proc
	kind     string // "credlet" or "vault-agent"
	dir      string
	socket   string // credlet: the Unix socket
	files    string // where credentials are delivered as files (skipped by the memory scan)
	listen   string // credlet: metrics address; Vault Agent: API proxy address
	setFiles map[string]string
}

// versionFile is where the agent's delivered file for set shows the KV
// version: credlet writes ..data/VERSION; the Vault Agent template here
// renders "<version> <api_key>".
func (a *agentProc) versionFile(set string) string { return a.setFiles[set] }

// fileVersion reads the delivered version of set (0 when not there yet).
func (a *agentProc) fileVersion(set string) int {
	b, err := os.ReadFile(a.versionFile(set))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// startCredlet starts credlet-agent logged in with role. refresh 0 keeps
// the agent's default. Without lockAll it runs without CAP_IPC_LOCK, like
// a pod under Pod Security "restricted" (credlet's default deployment):
// per-buffer mlock only. With it, the agent can mlockall the whole process.
func (e *env) startCredlet(bin, role string, refresh time.Duration, lockAll bool) (*agentProc, error) {
	dir, err := os.MkdirTemp(e.dir, "c")
	if err != nil {
		return nil, err
	}
	roleID, secretID, err := e.appRole(role, dir)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	a := &agentProc{kind: "credlet", dir: dir, socket: filepath.Join(dir, "a.sock"),
		files: filepath.Join(dir, "secrets"), listen: fmt.Sprintf("127.0.0.1:%d", port), setFiles: map[string]string{}}
	args := []string{"run", "--auth", "approle", "--role-id-file", roleID, "--secret-id-file", secretID,
		"--vault-addr", e.vault.Addr, "--socket", a.socket, "--secrets-dir", a.files,
		"--listen", a.listen, "--audit-file", filepath.Join(dir, "audit.log"), "--log-level", "warn"}
	if refresh > 0 {
		args = append(args, "--refresh", refresh.String())
	}
	for _, s := range e.sets {
		args = append(args, "--credential", s.name+"="+s.kvPath())
		a.setFiles[s.name] = filepath.Join(a.files, s.name, "..data", "VERSION")
	}
	exe, args := withoutIPCLock(!lockAll, bin, args)
	p, err := startProc("credlet-agent ("+role+")", filepath.Join(dir, "agent.log"), cleanEnv(), exe, args...)
	if err != nil {
		return nil, err
	}
	a.proc = p
	return a, nil
}

// startVaultAgent starts `vault agent` with auto-auth AppRole, a template
// per set rendered every interval (0: Vault Agent's default, 5 min), and
// the API proxy forcing the auto-auth token on a TCP listener.
func (e *env) startVaultAgent(vaultBin, role string, interval time.Duration) (*agentProc, error) {
	dir, err := os.MkdirTemp(e.dir, "v")
	if err != nil {
		return nil, err
	}
	roleID, secretID, err := e.appRole(role, dir)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	a := &agentProc{kind: "vault-agent", dir: dir, files: filepath.Join(dir, "out"),
		listen: fmt.Sprintf("127.0.0.1:%d", port), setFiles: map[string]string{}}
	if err := os.Mkdir(a.files, 0o700); err != nil {
		return nil, err
	}
	var cfg bytes.Buffer
	fmt.Fprintf(&cfg, `pid_file = %q
vault {
  address = %q
}
auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path                   = %q
      secret_id_file_path                 = %q
      remove_secret_id_file_after_reading = false
    }
  }
}
`, filepath.Join(dir, "pid"), e.vault.Addr, roleID, secretID)
	if interval > 0 {
		fmt.Fprintf(&cfg, "template_config {\n  static_secret_render_interval = %q\n}\n", interval.String())
	}
	for _, s := range e.sets {
		dest := filepath.Join(a.files, s.name)
		a.setFiles[s.name] = dest
		contents := fmt.Sprintf(`{{ with secret "%s" }}{{ .Data.metadata.version }} {{ .Data.data.api_key }}{{ end }}`, s.dataPath())
		fmt.Fprintf(&cfg, "template {\n  destination = %q\n  perms       = \"0400\"\n  contents    = %q\n}\n", dest, contents)
	}
	fmt.Fprintf(&cfg, `api_proxy {
  use_auto_auth_token = "force"
}
cache {}
listener "tcp" {
  address     = %q
  tls_disable = true
}
`, a.listen)
	cfgPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o600); err != nil {
		return nil, err
	}
	exe, args := withoutIPCLock(true, vaultBin, []string{"agent", "-config=" + cfgPath, "-log-level=warn"})
	p, err := startProc("vault agent ("+role+")", filepath.Join(dir, "agent.log"), cleanEnv(), exe, args...)
	if err != nil {
		return nil, err
	}
	a.proc = p
	return a, nil
}

// waitReady waits until every set is delivered as a file (both agents) and,
// for credlet, readable on the socket.
func (a *agentProc) waitReady(sets []credSet, timeout time.Duration) error {
	ok := waitFor(timeout, 5*time.Millisecond, func() bool {
		if a.exited() {
			return true
		}
		for _, s := range sets {
			if a.fileVersion(s.name) == 0 {
				return false
			}
		}
		return a.socket == "" || a.socketOK(sets[0].name)
	})
	if a.exited() {
		return fmt.Errorf("%s exited: %v: %s", a.name, a.err, a.logTail(600))
	}
	if !ok {
		return fmt.Errorf("%s: credentials not delivered after %s: %s", a.name, timeout, a.logTail(600))
	}
	return nil
}

// socketOK reports whether one GET of set on the socket answers 200.
func (a *agentProc) socketOK(set string) bool {
	c := newConn(unixDialer(a.socket))
	defer c.close()
	status, _, err := c.do(getRequest("/v1/credentials/" + set))
	return err == nil && status == 200
}

// withoutIPCLock wraps bin in setpriv(1) dropping CAP_IPC_LOCK from the
// bounding and inheritable sets (so root's exec does not regain it), when
// drop is set. setpriv execs bin: the PID is the agent's.
func withoutIPCLock(drop bool, bin string, args []string) (string, []string) {
	sp, err := exec.LookPath("setpriv")
	if !drop || err != nil {
		return bin, args
	}
	return sp, append([]string{"--bounding-set", "-ipc_lock", "--inh-caps", "-ipc_lock", "--", bin}, args...)
}

// cleanEnv is the environment for agents: no Vault settings leak in from
// the caller's shell.
func cleanEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir()}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
