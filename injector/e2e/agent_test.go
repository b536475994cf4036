package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credlet/credlet/agent/client"
	"github.com/credlet/credlet/internal/mutate"
	"github.com/credlet/credlet/internal/testenv"
)

// TestAgentEndToEnd: the agent, run with exactly the args and env of the
// stored pod's injected container, logs in to Vault with the pod's
// ServiceAccount token (audience vault, from a TokenRequest, as the kubelet
// would project it), serves the credential over the socket, writes the
// files, and picks up a rotation.
//
// What the kubelet would provide is mapped to local paths: the projected
// token file, the two emptyDirs, the probe port; and the app's uid 1000 to
// this test's own uid, since the test process plays the app.
func TestAgentEndToEnd(t *testing.T) {
	testenv.NeedServers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	agentBin := buildAgent(t)

	// Vault: the partner's secret, a policy for it, a role for the pod's SA.
	if err := vault.WritePolicy("e2e-exa-read", `
path "secret/data/partners/e2e/*" { capabilities = ["read"] }
path "secret/metadata/partners/e2e/*" { capabilities = ["read"] }
`); err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, nsAgent, "bot"); err != nil {
		t.Fatal(err)
	}
	if err := vault.CreateKubernetesRole("", "e2e-bot", []string{"bot"}, []string{nsAgent}, []string{"e2e-exa-read"}, time.Hour, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	container := injectedAgent(t, ctx, nsAgent, "agent-e2e", map[string]string{
		"credlet.io/role": "e2e-bot",
	}, "partners/e2e/exa")
	token, err := kube.TokenRequest(ctx, nsAgent, "bot", "vault", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, agentBin, container, token)
	a.waitReady(t, ctx)
	checkServesAndRotates(t, ctx, a, "partners/e2e/exa")
}

// TestAgentEndToEndJWT: the same through jwt auth. The pod says
// credlet.io/auth: jwt; the injector passes its namespace's configured
// authMount; Vault verifies the projected token against the envtest
// apiserver's own issuer keys (no TokenReview), and the role's claim
// mappings feed a policy templated on the namespace, as setup.sh sets it up.
// An agent given a token for the wrong audience stays not ready and says
// why in one log line naming jwt login and Vault's reason.
func TestAgentEndToEndJWT(t *testing.T) {
	testenv.NeedServers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	agentBin := buildAgent(t)

	mounts, err := vault.Client().Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ns := "{{identity.entity.aliases." + mounts[jwtMount+"/"].Accessor + ".metadata.service_account_namespace}}"
	if err := vault.WritePolicy("e2e-jwt-partner", `
path "secret/data/partners/e2e/`+ns+`/*" { capabilities = ["read"] }
path "secret/metadata/partners/e2e/`+ns+`/*" { capabilities = ["read"] }
`); err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, nsJWT, "bot"); err != nil {
		t.Fatal(err)
	}
	if err := vault.CreateJWTRole(jwtMount, "e2e-jwt-bot", []string{"bot"}, []string{nsJWT}, []string{"e2e-jwt-partner"}, time.Hour, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	kvPath := "partners/e2e/" + nsJWT + "/exa"
	container := injectedAgent(t, ctx, nsJWT, "agent-e2e-jwt", map[string]string{
		"credlet.io/auth": "jwt",
		"credlet.io/role": "e2e-jwt-bot",
	}, kvPath)
	for _, want := range []string{"--auth=jwt", "--auth-mount=" + jwtMount, "--role=e2e-jwt-bot", "--token-file=" + mutate.TokenPath} {
		if !slices.Contains(container.Args, want) {
			t.Fatalf("injected args %q lack %s", container.Args, want)
		}
	}

	// Refused: a token for another audience.
	wrong, err := kube.TokenRequest(ctx, nsJWT, "bot", "not-vault", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	refused := startAgent(t, agentBin, container, wrong)
	deadline := time.Now().Add(20 * time.Second)
	var lines []string
	for len(lines) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no jwt login failure logged in 20 s")
		}
		time.Sleep(100 * time.Millisecond)
		lines = refused.logLines(t, "jwt login")
	}
	time.Sleep(2 * time.Second) // room for a second line, which must not come
	lines = refused.logLines(t, "jwt login")
	if len(lines) != 1 || !strings.Contains(lines[0], "vault login failed") || !strings.Contains(lines[0], "invalid audience") {
		t.Errorf("want one line naming the failed jwt login and Vault's reason (invalid audience), got %q", lines)
	}
	if code := refused.httpStatus(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a refused token = %d, want 503", code)
	}
	if m := refused.metrics(t); !strings.Contains(m, `credlet_logins_total{method="jwt",result="permanent_error"} 1`) {
		t.Errorf("metrics lack one permanent jwt login error:\n%s", grepLines(m, "credlet_logins_total"))
	}
	refused.stop(t)
	for _, f := range []string{refused.logPath, refused.auditPath} {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), wrong) {
			t.Errorf("the agent wrote the token to %s", f)
		}
	}
	if b, _ := os.ReadFile(refused.auditPath); len(grepLinesSlice(string(b), `"event":"login"`)) != 1 ||
		!strings.Contains(string(b), "invalid audience") {
		t.Errorf("the audit trail lacks the one refused login:\n%s", b)
	}

	// Accepted: the projected token with audience vault.
	token, err := kube.TokenRequest(ctx, nsJWT, "bot", "vault", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, agentBin, container, token)
	a.waitReady(t, ctx)
	checkServesAndRotates(t, ctx, a, kvPath)
	if m := a.metrics(t); !strings.Contains(m, `credlet_logins_total{method="jwt",result="success"} 1`) {
		t.Errorf("metrics lack one jwt login:\n%s", grepLines(m, "credlet_logins_total"))
	}
}

// injectedAgent writes version 1 of kvPath, creates a pod in ns through the
// apiserver (and so the injector) reading it as credential exa, and returns
// the agent container the stored pod holds.
func injectedAgent(t *testing.T, ctx context.Context, ns, name string, annotations map[string]string, kvPath string) corev1.Container {
	t.Helper()
	kv := vault.Client().KVv2("secret")
	if _, err := kv.Put(ctx, kvPath, map[string]any{"api_key": "FAKE-e2e-key-v1", "api_secret": "FAKE-e2e-secret-v1"}); err != nil {
		t.Fatal(err)
	}
	pod := botPod(name, func(p *corev1.Pod) {
		p.Spec.ServiceAccountName = "bot"
		delete(p.Annotations, "credlet.io/role")
		maps.Copy(p.Annotations, annotations)
		p.Annotations["credlet.io/credential.exa"] = "secret/" + kvPath
		p.Annotations["credlet.io/refresh"] = "1s"
	})
	stored, err := kube.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	stored, err = kube.Clientset.CoreV1().Pods(ns).Get(ctx, stored.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent := stored.Spec.InitContainers[0]
	if agent.Name != mutate.AgentName {
		t.Fatalf("no agent in the stored pod: %+v", stored.Spec.InitContainers)
	}
	return agent
}

// runningAgent is one credlet-agent process run as an injected container.
type runningAgent struct {
	port               int
	socket, secretsDir string
	logPath, auditPath string
	args               []string
	exited             chan error
	cmd                *exec.Cmd
	stopped            bool
}

// startAgent runs the container's agent with token as the projected token.
func startAgent(t *testing.T, agentBin string, agent corev1.Container, token string) *runningAgent {
	t.Helper()
	dir := t.TempDir()
	runDir, err := os.MkdirTemp("", "cre2e") // short: a socket path is limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a := &runningAgent{port: port, secretsDir: filepath.Join(dir, "secrets"), socket: filepath.Join(runDir, "agent.sock"),
		logPath: filepath.Join(dir, "agent.log"), auditPath: filepath.Join(dir, "audit.log"), exited: make(chan error, 1)}
	if err := os.Mkdir(a.secretsDir, 0o777); err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getuid())
	local := map[string]string{
		mutate.TokenPath:                     tokenFile,
		mutate.SecretsDir:                    a.secretsDir,
		mutate.SocketPath:                    a.socket,
		":" + strconv.Itoa(mutate.AgentPort): "127.0.0.1:" + strconv.Itoa(port),
		"1000":                               me,
	}
	a.args = localArgs(t, agent.Args, local)
	// Not bound to ctx: stop (a cleanup, after the test's own defers) ends
	// it with SIGTERM and checks that it exits cleanly.
	cmd := exec.Command(agentBin, a.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	for _, e := range agent.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	logFile, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	auditFile, err := os.Create(a.auditPath) // the audit trail goes to stdout by default
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auditFile.Close() })
	cmd.Stdout, cmd.Stderr = auditFile, logFile
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd = cmd
	go func() { a.exited <- cmd.Wait() }()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// stop sends SIGTERM and waits; the agent must exit cleanly. On a failed
// test it logs the agent's args and log.
func (a *runningAgent) stop(t *testing.T) {
	t.Helper()
	if a.stopped {
		return
	}
	a.stopped = true
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.exited:
		if err != nil {
			t.Errorf("agent exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
		t.Errorf("agent did not stop within 15 s of SIGTERM")
	}
	if t.Failed() {
		b, _ := os.ReadFile(a.logPath)
		t.Logf("agent args: %q\nagent log:\n%s", a.args, b)
	}
}

// waitReady waits for the startup probe: /readyz on the agent's port.
func (a *runningAgent) waitReady(t *testing.T, ctx context.Context) {
	t.Helper()
	waitHTTP(t, ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", a.port), a.exited)
}

func (a *runningAgent) httpStatus(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", a.port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (a *runningAgent) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", a.port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logLines returns the agent's log lines that contain s.
func (a *runningAgent) logLines(t *testing.T, s string) []string {
	t.Helper()
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return grepLinesSlice(string(b), s)
}

func grepLinesSlice(text, s string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

func grepLines(text, s string) string { return strings.Join(grepLinesSlice(text, s), "\n") }

// checkServesAndRotates: the agent serves version 1 of kvPath as exa over
// the socket and in the files, then picks up version 2.
func checkServesAndRotates(t *testing.T, ctx context.Context, a *runningAgent, kvPath string) {
	t.Helper()
	c := client.New(a.socket)
	cred, err := c.Get(ctx, "exa")
	if err != nil {
		t.Fatalf("get over the socket: %v", err)
	}
	if cred.Version != 1 || cred.Fields["api_key"] != "FAKE-e2e-key-v1" || cred.Fields["api_secret"] != "FAKE-e2e-secret-v1" {
		t.Fatalf("credential %d %v", cred.Version, cred.FieldNames())
	}
	waitFile(t, filepath.Join(a.secretsDir, "exa", "api_key"), "FAKE-e2e-key-v1")

	// Rotation: a new KV version reaches the socket and the files.
	kv := vault.Client().KVv2("secret")
	if _, err := kv.Put(ctx, kvPath, map[string]any{"api_key": "FAKE-e2e-key-v2", "api_secret": "FAKE-e2e-secret-v2"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cred, err = c.Get(ctx, "exa")
		if err == nil && cred.Version == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotation not seen in 30s: %v %v", cred, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cred.Fields["api_key"] != "FAKE-e2e-key-v2" {
		t.Errorf("rotated api_key wrong")
	}
	waitFile(t, filepath.Join(a.secretsDir, "exa", "api_key"), "FAKE-e2e-key-v2")
}

// waitFile waits for the file sink, which publishes after the socket's
// store, to hold want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("file %s: %d bytes, %v; want the expected value", path, len(b), err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// localArgs maps the in-pod values of the agent's flags to local ones.
func localArgs(t *testing.T, args []string, local map[string]string) []string {
	t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		name, value, ok := strings.Cut(a, "=")
		if !ok {
			continue
		}
		switch name {
		case "--token-file", "--secrets-dir", "--socket", "--listen", "--allow-uid", "--file-uid", "--file-gid":
			if v, ok := local[value]; ok {
				out[i] = name + "=" + v
			} else if value != "" {
				t.Fatalf("no local mapping for %s", a)
			}
		}
	}
	return out
}

// buildAgent builds credlet-agent from this module, or takes
// $CREDLET_AGENT_BIN when set (a prebuilt binary, e.g. from make build).
func buildAgent(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CREDLET_AGENT_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "credlet-agent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/credlet/credlet/agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	return bin
}

func waitHTTP(t *testing.T, ctx context.Context, url string, exited <-chan error) {
	t.Helper()
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited before ready: %v", err)
		case <-ctx.Done():
			t.Fatalf("agent not ready at %s: %v", url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
