package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	kv := vault.Client().KVv2("secret")
	if _, err := kv.Put(ctx, "partners/e2e/exa", map[string]any{"api_key": "FAKE-e2e-key-v1", "api_secret": "FAKE-e2e-secret-v1"}); err != nil {
		t.Fatal(err)
	}
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

	// The pod, through the apiserver and the injector.
	pod := botPod("agent-e2e", func(p *corev1.Pod) {
		p.Spec.ServiceAccountName = "bot"
		p.Annotations["credlet.io/role"] = "e2e-bot"
		p.Annotations["credlet.io/credential.exa"] = "secret/partners/e2e/exa"
		p.Annotations["credlet.io/refresh"] = "1s"
	})
	stored, err := kube.Clientset.CoreV1().Pods(nsAgent).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	stored, err = kube.Clientset.CoreV1().Pods(nsAgent).Get(ctx, stored.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent := stored.Spec.InitContainers[0]
	if agent.Name != mutate.AgentName {
		t.Fatalf("no agent in the stored pod: %+v", stored.Spec.InitContainers)
	}

	// What the kubelet would mount.
	token, err := kube.TokenRequest(ctx, nsAgent, "bot", "vault", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
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
	secretsDir, socket := filepath.Join(dir, "secrets"), filepath.Join(runDir, "agent.sock")
	if err := os.Mkdir(secretsDir, 0o777); err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getuid())
	local := map[string]string{
		mutate.TokenPath:                     tokenFile,
		mutate.SecretsDir:                    secretsDir,
		mutate.SocketPath:                    socket,
		":" + strconv.Itoa(mutate.AgentPort): "127.0.0.1:" + strconv.Itoa(port),
		"1000":                               me,
	}
	args := localArgs(t, agent.Args, local)
	cmd := exec.CommandContext(ctx, agentBin, args...)
	for _, e := range agent.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	logPath := filepath.Join(dir, "agent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("agent exit: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("agent args: %q\nagent log:\n%s", args, b)
		}
	}()

	// The startup probe: /readyz on the agent's port.
	waitHTTP(t, ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), exited)

	c := client.New(socket)
	cred, err := c.Get(ctx, "exa")
	if err != nil {
		t.Fatalf("get over the socket: %v", err)
	}
	if cred.Version != 1 || cred.Fields["api_key"] != "FAKE-e2e-key-v1" || cred.Fields["api_secret"] != "FAKE-e2e-secret-v1" {
		t.Fatalf("credential %d %v", cred.Version, cred.FieldNames())
	}
	waitFile(t, filepath.Join(secretsDir, "exa", "api_key"), "FAKE-e2e-key-v1")

	// Rotation: a new KV version reaches the socket and the files.
	if _, err := kv.Put(ctx, "partners/e2e/exa", map[string]any{"api_key": "FAKE-e2e-key-v2", "api_secret": "FAKE-e2e-secret-v2"}); err != nil {
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
	waitFile(t, filepath.Join(secretsDir, "exa", "api_key"), "FAKE-e2e-key-v2")
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
