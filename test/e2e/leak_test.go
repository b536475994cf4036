package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/agent/client"
	"github.com/credlet/credlet/internal/testenv"
)

// Obviously fake values; the test fails if any appears where it must not.
var fakeSecrets = []string{
	"FAKE-e2e-api-key-v1-7d3a", "FAKE-e2e-api-secret-v1-91bc", "FAKE-e2e-api-key-v2-5e0f",
	"FAKE-e2e-api-secret-v2-c4d8", "FAKE-e2e-transit-token-0a6e",
}

// TestAgentLeaksNoSecret runs the agent with files, socket, audit file and
// metrics, reads and rotates, then scans every output the agent wrote
// outside the secrets directory for the fake values.
func TestAgentLeaksNoSecret(t *testing.T) {
	testenv.NeedServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vc := vault.Client()

	// A Transit key derived per partner, and one field encrypted under it.
	if _, err := vc.Logical().Write("transit/keys/e2e-partners", map[string]any{"derived": true}); err != nil {
		t.Fatal(err)
	}
	partnerCtx := base64.StdEncoding.EncodeToString([]byte("acme"))
	enc, err := vc.Logical().Write("transit/encrypt/e2e-partners", map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString([]byte(fakeSecrets[4])), "context": partnerCtx,
	})
	if err != nil {
		t.Fatal(err)
	}
	ciphertext := enc.Data["ciphertext"].(string)
	kv := vc.KVv2("secret")
	if _, err := kv.Put(ctx, "e2e/acme/zerodha", map[string]any{"api_key": fakeSecrets[0], "api_secret": fakeSecrets[1]}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "e2e/acme/oauth", map[string]any{"refresh_token": ciphertext}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	secretsDir := filepath.Join(dir, "secrets")
	sock := filepath.Join(dir, "run", "agent.sock")
	auditFile := filepath.Join(dir, "audit.log")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(agentBin, "run",
		"--auth", "token", "--vault-addr", vault.Addr,
		"--credential", "zerodha=secret/e2e/acme/zerodha;format=env",
		"--credential", "oauth=secret/data/e2e/acme/oauth;transit=e2e-partners;context=acme;fields=refresh_token",
		"--refresh", "300ms", "--secrets-dir", secretsDir, "--socket", sock,
		"--audit-file", auditFile, "--listen", listen, "--log-level", "debug")
	cmd.Env = append(os.Environ(), "VAULT_TOKEN="+vault.RootToken)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent exited with %v after SIGTERM\nstderr:\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("agent did not stop within 15 s of SIGTERM")
		}
	}
	defer stop()

	c := client.New(sock)
	made := map[int]int{} // successful reads of zerodha by version, as the audit must count them
	cred := waitVersion(ctx, t, c, "zerodha", 1, made)
	if cred.Fields["api_key"] != fakeSecrets[0] {
		t.Fatalf("zerodha api_key not delivered over the socket")
	}
	oauth := waitVersion(ctx, t, c, "oauth", 1, nil)
	if oauth.Fields["refresh_token"] != fakeSecrets[4] {
		t.Fatalf("transit field not decrypted: got %d bytes", len(oauth.Fields["refresh_token"]))
	}
	for range 250 {
		got, err := c.Get(ctx, "zerodha")
		if err != nil {
			t.Fatal(err)
		}
		made[got.Version]++
	}

	// Rotate and wait until the socket and the file both show version 2.
	if _, err := kv.Put(ctx, "e2e/acme/zerodha", map[string]any{"api_key": fakeSecrets[2], "api_secret": fakeSecrets[3]}); err != nil {
		t.Fatal(err)
	}
	waitVersion(ctx, t, c, "zerodha", 2, made)
	envFile := filepath.Join(secretsDir, "zerodha", "credentials.env")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(envFile)
		if bytes.Contains(b, []byte(fakeSecrets[2])) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("credentials.env never showed version 2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(envFile); err != nil || fi.Mode().Perm() != 0o400 {
		t.Fatalf("credentials.env mode = %v, %v; want 0400", fi.Mode(), err)
	}

	metricsBody := httpGet(t, "http://"+listen+"/metrics")
	if !strings.Contains(metricsBody, `credlet_credential_version{name="zerodha"} 2`) {
		t.Errorf("/metrics does not report version 2 for zerodha")
	}
	health := httpGet(t, "http://"+listen+"/readyz")
	if !strings.HasPrefix(health, "ready") {
		t.Errorf("/readyz = %q", health)
	}
	stop()

	// Everything the agent wrote outside the secrets directory.
	outputs := map[string][]byte{
		"stdout": stdout.Bytes(), "stderr": stderr.Bytes(), "/metrics": []byte(metricsBody),
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == secretsDir && d.IsDir() {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			outputs[p] = b
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(outputs[auditFile]) == 0 || len(outputs["stderr"]) == 0 {
		t.Fatalf("expected a non-empty audit file and log (audit %d bytes, log %d bytes)", len(outputs[auditFile]), len(outputs["stderr"]))
	}
	for where, b := range outputs {
		for _, s := range append(fakeSecrets, vault.RootToken, ciphertext) {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains a secret value or token (%.12s…)", where, s)
			}
		}
	}

	// The audit trail verifies with the agent's own verifier, and its read
	// records (first read + summaries) add up to the reads made.
	verify := exec.Command(agentBin, "audit", "verify", auditFile)
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	for v, n := range made {
		if got := countReads(t, outputs[auditFile], "zerodha", v); got != n {
			t.Errorf("audit read records for zerodha v%d add up to %d, made %d", v, got, n)
		}
	}
	if made[1] < 250 {
		t.Errorf("made only %d reads of version 1", made[1])
	}
	for _, ev := range []string{"login", "fetch", "commit", "read"} {
		if !bytes.Contains(outputs[auditFile], []byte(`"event":"`+ev+`"`)) {
			t.Errorf("audit trail has no %s event", ev)
		}
	}
}

// waitVersion reads until name reaches version, counting successful reads
// by version in made (if not nil).
func waitVersion(ctx context.Context, t *testing.T, c *client.Client, name string, version int, made map[int]int) *client.Credential {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cred, err := c.Get(ctx, name)
		if err == nil && made != nil {
			made[cred.Version]++
		}
		if err == nil && cred.Version >= version {
			return cred
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached version %d (last error %v)", name, version, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{}).DialContext,
	}}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// countReads sums the reads the audit trail accounts for: each read record
// stands for its count (1 when absent).
func countReads(t *testing.T, audit []byte, name string, version int) int {
	t.Helper()
	total := 0
	sc := bufio.NewScanner(bytes.NewReader(audit))
	for sc.Scan() {
		var r struct {
			Event      string `json:"event"`
			Credential string `json:"credential"`
			Version    int    `json:"version"`
			Count      int    `json:"count"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		if r.Event == "read" && r.Credential == name && r.Version == version {
			total += max(r.Count, 1)
		}
	}
	return total
}
