package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// relPolicy lets the agents read every path the suite writes.
const relPolicy = "credlet-reliability"

var pathSeq atomic.Int64

// uniquePath is a fresh KV path (inside secret/) for one test.
func uniquePath(name string) string {
	return fmt.Sprintf("rel/%s-%d-%d", name, os.Getpid(), pathSeq.Add(1))
}

// putVersion writes version n of path: each field holds FAKE-<field>-v<n>.
// The path must be fresh so that KV version n is the n-th write; it fails
// the test if Vault's version differs.
func putVersion(t testing.TB, path string, n int, fields []string) {
	t.Helper()
	data := map[string]any{}
	for _, f := range fields {
		data[f] = fakeValue(f, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := vault.Client().KVv2(testenv.KVMount).Put(ctx, path, data)
	if err != nil {
		t.Fatalf("write %s v%d: %v", path, n, err)
	}
	if s.VersionMetadata.Version != n {
		t.Fatalf("write %s: Vault made version %d, want %d", path, s.VersionMetadata.Version, n)
	}
}

func fakeValue(field string, n int) string { return fmt.Sprintf("FAKE-%s-v%d", field, n) }

// consistent checks that every field carries version n.
func consistent(fields map[string]string, names []string, n int) error {
	for _, f := range names {
		v, ok := fields[f]
		if !ok {
			return fmt.Errorf("field %s missing", f)
		}
		if v != fakeValue(f, n) {
			return fmt.Errorf("torn read: version %d but field %s is %q", n, f, v)
		}
	}
	return nil
}

// agentOpts configure one credlet-agent process.
type agentOpts struct {
	vaultAddr string        // default: the shared Vault
	refresh   time.Duration // default 1s
	creds     []string      // --credential specs
	tokenTTL  time.Duration // AppRole token TTL, default 1m
	dir       string        // reuse a previous agent's directory (restart)
	role      string        // reuse a previous agent's role
}

// agentProc is a running credlet-agent.
type agentProc struct {
	t       *testing.T
	opts    agentOpts
	dir     string
	socket  string
	secrets string
	listen  string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

var roleSeq atomic.Int64

// startAgent starts credlet-agent with AppRole auth against Vault. It is
// stopped (SIGTERM, then SIGKILL) when the test ends, and its log is checked
// for data races and panics.
func startAgent(t *testing.T, o agentOpts) *agentProc {
	t.Helper()
	if o.vaultAddr == "" {
		o.vaultAddr = vault.Addr
	}
	if o.refresh == 0 {
		o.refresh = time.Second
	}
	if o.tokenTTL == 0 {
		o.tokenTTL = time.Minute
	}
	if o.dir == "" {
		// Short: the socket path must fit in 108 bytes.
		d, err := os.MkdirTemp("", "rel")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		o.dir = d
	}
	if o.role == "" {
		o.role = fmt.Sprintf("rel-%d-%d", os.Getpid(), roleSeq.Add(1))
		if err := vault.WritePolicy(relPolicy, `path "secret/data/rel/*" { capabilities = ["read"] }
path "secret/metadata/rel/*" { capabilities = ["read"] }`); err != nil {
			t.Fatal(err)
		}
		rid, sid, err := vault.CreateAppRole(o.role, []string{relPolicy}, o.tokenTTL, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(o.dir, "role_id"), rid)
		writeFile(t, filepath.Join(o.dir, "secret_id"), sid)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{t: t, opts: o, dir: o.dir, socket: filepath.Join(o.dir, "a.sock"),
		secrets: filepath.Join(o.dir, "secrets"), listen: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan struct{})}
	args := []string{"run", "--auth", "approle",
		"--role-id-file", filepath.Join(o.dir, "role_id"), "--secret-id-file", filepath.Join(o.dir, "secret_id"),
		"--vault-addr", o.vaultAddr, "--refresh", o.refresh.String(),
		"--socket", a.socket, "--secrets-dir", a.secrets, "--listen", a.listen,
		"--audit-file", filepath.Join(o.dir, "audit.log"), "--log-level", "info"}
	for _, c := range o.creds {
		args = append(args, "--credential", c)
	}
	a.logPath = filepath.Join(o.dir, fmt.Sprintf("agent-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + o.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatal(err)
	}
	a.cmd = cmd
	go func() {
		a.waitErr = cmd.Wait()
		_ = logf.Close()
		close(a.done)
	}()
	t.Cleanup(func() {
		if !a.exited() {
			_ = a.signal(syscall.SIGTERM, 10*time.Second)
		}
		a.checkLog()
	})
	return a
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (a *agentProc) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// signal sends sig and waits up to timeout for the exit; after the timeout
// it kills the process and reports that it did not stop.
func (a *agentProc) signal(sig syscall.Signal, timeout time.Duration) error {
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
		return a.waitErr
	case <-time.After(timeout):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
		return fmt.Errorf("agent did not exit within %s of %s", timeout, sig)
	}
}

// restart starts a new agent on the same directory, role and flags.
func (a *agentProc) restart() *agentProc {
	a.t.Helper()
	return startAgent(a.t, a.opts)
}

func (a *agentProc) logTail() string {
	b, _ := os.ReadFile(a.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// checkLog fails the test on a data race or a panic in the agent's log.
func (a *agentProc) checkLog() {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return
	}
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if i := bytes.Index(b, []byte(bad)); i >= 0 {
			end := min(len(b), i+3000)
			a.t.Errorf("agent log has %q:\n%s", bad, b[i:end])
		}
	}
}

// waitReady waits until /readyz answers 200.
func (a *agentProc) waitReady(timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		if a.exited() {
			a.t.Fatalf("agent exited before ready: %v\n%s", a.waitErr, a.logTail())
		}
		resp, err := c.Get("http://" + a.listen + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("agent not ready after %s (last: %v)\n%s", timeout, err, a.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// socketClient is an HTTP client over the agent's Unix socket.
func socketClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConnsPerHost: 2,
		},
	}
}

// credential is the socket API's answer for one set.
type credential struct {
	Name    string            `json:"name"`
	Version int               `json:"version"`
	Fields  map[string]string `json:"fields"`
}

// getCredential reads a set from the socket.
func getCredential(c *http.Client, name string) (credential, error) {
	resp, err := c.Get("http://agent/v1/credentials/" + name)
	if err != nil {
		return credential{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return credential{}, err
	}
	if resp.StatusCode != 200 {
		return credential{}, fmt.Errorf("GET %s: status %d: %s", name, resp.StatusCode, body)
	}
	var cr credential
	if err := json.Unmarshal(body, &cr); err != nil {
		return credential{}, fmt.Errorf("GET %s: %w", name, err)
	}
	return cr, nil
}

// readFileSet reads one consistent version of a format=files set the way
// the file sink documents: open ..data once, read every file relative to
// it, and start again if the version was replaced meanwhile (a file gone).
func readFileSet(setDir string, names []string) (int, map[string]string, error) {
	var last error
	for range 50 {
		v, fields, err := readFileSetOnce(setDir, names)
		if err == nil {
			return v, fields, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return 0, nil, err
		}
		last = err
	}
	return 0, nil, fmt.Errorf("no consistent version in 50 attempts: %w", last)
}

func readFileSetOnce(setDir string, names []string) (int, map[string]string, error) {
	root, err := os.OpenRoot(filepath.Join(setDir, "..data"))
	if err != nil {
		return 0, nil, err
	}
	defer root.Close()
	vb, err := root.ReadFile("VERSION")
	if err != nil {
		return 0, nil, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(vb)))
	if err != nil {
		return 0, nil, fmt.Errorf("VERSION %q: %w", vb, err)
	}
	fields := map[string]string{}
	for _, n := range names {
		b, err := root.ReadFile(n)
		if err != nil {
			return 0, nil, err
		}
		fields[n] = string(b)
	}
	return v, fields, nil
}

// readJSONFile reads a format=json set's credentials.json: one file, so
// always one version. It holds the fields only; the version is the tag the
// suite puts in every value (FAKE-<field>-v<n>), taken from the first name.
func readJSONFile(setDir string, names []string) (int, map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(setDir, "credentials.json"))
	if err != nil {
		return 0, nil, err
	}
	var fields map[string]string
	if err := json.Unmarshal(b, &fields); err != nil {
		return 0, nil, fmt.Errorf("credentials.json: %w", err)
	}
	v, err := tagOf(fields[names[0]])
	if err != nil {
		return 0, nil, fmt.Errorf("credentials.json: %w", err)
	}
	return v, fields, nil
}

// tagOf parses n out of FAKE-<field>-v<n>.
func tagOf(value string) (int, error) {
	i := strings.LastIndex(value, "-v")
	if i < 0 {
		return 0, fmt.Errorf("value %q carries no version tag", value)
	}
	return strconv.Atoi(value[i+2:])
}

// metric returns the sum of every sample of name whose labels contain each
// of the label matchers (`k="v"`), from the agent's /metrics.
func (a *agentProc) metric(name string, matchers ...string) (float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.listen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // a longer metric name
		}
		ok := true
		for _, m := range matchers {
			if !strings.Contains(labels, m) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("metric %s%v not found", name, matchers)
	}
	return sum, sc.Err()
}
