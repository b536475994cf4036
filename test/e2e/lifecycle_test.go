package e2e

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/credlet/credlet/agent/client"
	"github.com/credlet/credlet/internal/testenv"
)

// TestKeyLifecycle runs the agent binary against Vault and drives the key
// lifecycle with the binary's own operator commands: an expiry reaches the
// socket and the metrics (and follows a metadata-only change); after the
// Transit key rotates, `creds rewrap` writes a new version that the agent
// serves with the same values, without asking the blue/green hook or
// notifying the app; min_decryption_version is raised and the agent keeps
// decrypting the next rotation; the previous version stays readable. No
// output holds a value.
func TestKeyLifecycle(t *testing.T) {
	testenv.NeedServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vc := vault.Client()
	const key = "e2e-lifecycle"
	if _, err := vc.Logical().Write("transit/keys/"+key, map[string]any{"derived": true, "auto_rotate_period": "720h"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	values := map[string]string{
		"key1": "FAKE-lc-api-key-1-31f0", "secret1": "FAKE-lc-api-secret-1-8c2e",
		"key2": "FAKE-lc-api-key-2-a7d4", "oauth": "FAKE-lc-oauth-token-5b19",
	}
	for name, v := range values {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cliOut bytes.Buffer
	creds := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, agentBin, append([]string{"creds"}, args...)...)
		cmd.Env = append(os.Environ(), "VAULT_ADDR="+vault.Addr, "VAULT_TOKEN="+vault.RootToken)
		out, err := cmd.CombinedOutput()
		cliOut.Write(out)
		if err != nil {
			t.Fatalf("creds %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	zerodha, oauth := "secret/e2e-lc/acme/zerodha", "secret/e2e-lc/acme/oauth"
	exp := time.Now().Add(20 * time.Hour).UTC().Truncate(time.Second)
	creds("put", zerodha, "api_key=@"+filepath.Join(dir, "key1"), "api_secret=@"+filepath.Join(dir, "secret1"), "--transit", key, "--context", "acme")
	creds("put", oauth, "access_token=@"+filepath.Join(dir, "oauth"), "--expires-at", exp.Format(time.RFC3339))

	// The blue/green hook and the notify hook count their calls.
	var verifies, notifies atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Both count calls about zerodha (the verify body also holds values:
	// it is read, never kept).
	hooks := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Name string `json:"name"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body)
		if body.Name != "zerodha" {
			return
		}
		switch r.URL.Path {
		case "/verify":
			verifies.Add(1)
		case "/notify":
			notifies.Add(1)
		}
	})}
	go func() { _ = hooks.Serve(ln) }()
	defer hooks.Close()
	hookURL := "http://" + ln.Addr().String()

	sock := filepath.Join(dir, "run", "agent.sock")
	auditFile := filepath.Join(dir, "audit.log")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	var stdout, stderr bytes.Buffer
	agent := exec.Command(agentBin, "run",
		"--auth", "token", "--vault-addr", vault.Addr,
		"--credential", "zerodha="+zerodha+";transit="+key+";context=acme",
		"--credential", "oauth="+oauth,
		"--refresh", "200ms", "--secrets-dir", "", "--socket", sock,
		"--verify-url", hookURL+"/verify", "--notify", "http:"+hookURL+"/notify",
		"--audit-file", auditFile, "--listen", listen, "--log-level", "debug")
	agent.Env = append(os.Environ(), "VAULT_TOKEN="+vault.RootToken)
	agent.Stdout, agent.Stderr = &stdout, &stderr
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
	}()
	c := client.New(sock)

	// The expiry reaches the socket and the gauge.
	o := waitVersion(ctx, t, c, "oauth", 1, nil)
	if o.ExpiresAt == nil || !o.ExpiresAt.Equal(exp) {
		t.Fatalf("oauth expires_at on the socket: %v; want %v", o.ExpiresAt, exp)
	}
	waitMetric(t, listen, `credlet_credential_expiry_timestamp_seconds{name="oauth"}`, float64(exp.Unix()))
	waitMetric(t, listen, `credlet_credential_expiry_timestamp_seconds{name="zerodha"}`, 0)
	// A change of the metadata alone (no new version) follows within a poll.
	exp2 := exp.Add(2 * time.Hour)
	if _, err := vc.Logical().Write("secret/metadata/e2e-lc/acme/oauth", map[string]any{"custom_metadata": map[string]string{"expires_at": exp2.Format(time.RFC3339)}}); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, listen, `credlet_credential_expiry_timestamp_seconds{name="oauth"}`, float64(exp2.Unix()))
	if o, err := c.Get(ctx, "oauth"); err != nil || o.Version != 1 || o.ExpiresAt == nil || !o.ExpiresAt.Equal(exp2) {
		t.Fatalf("oauth after the metadata change: %v %v", o, err)
	}

	z1 := waitVersion(ctx, t, c, "zerodha", 1, nil)
	if z1.Fields["api_secret"] != values["secret1"] {
		t.Fatal("zerodha v1 not decrypted")
	}
	if _, err := c.GetPrevious(ctx, "zerodha"); err == nil {
		t.Fatal("a previous version before any rotation")
	}
	v0, n0 := verifies.Load(), notifies.Load()
	if v0 != 1 {
		t.Fatalf("verify hook called %d times for version 1", v0)
	}

	// The key rotates; rewrap moves zerodha to the new key version.
	if _, err := vc.Logical().Write("transit/keys/"+key+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	out := creds("rewrap", "secret/e2e-lc/acme", "--transit", key, "--context", "acme")
	if !strings.Contains(out, "rewrapped "+zerodha+": version 1 -> 2 (api_key v1, api_secret v1 -> key v2)") ||
		!strings.Contains(out, "no ciphertext "+oauth) {
		t.Fatalf("rewrap output:\n%s", out)
	}
	z2 := waitVersion(ctx, t, c, "zerodha", 2, nil)
	if z2.Fields["api_key"] != values["key1"] || z2.Fields["api_secret"] != values["secret1"] {
		t.Fatal("the rewrapped version does not hold the same values")
	}
	time.Sleep(500 * time.Millisecond) // time for a wrong hook call to land
	if v, n := verifies.Load(), notifies.Load(); v != v0 || n != n0 {
		t.Fatalf("a rewrap called the hooks: verify %d -> %d, notify %d -> %d", v0, v, n0, n)
	}

	// Old key versions go; the agent keeps decrypting new versions.
	if _, err := vc.Logical().Write("transit/keys/"+key+"/config", map[string]any{"min_decryption_version": 2}); err != nil {
		t.Fatal(err)
	}
	creds("rotate", zerodha, "api_key=@"+filepath.Join(dir, "key2"), "--transit", key, "--context", "acme", "--transit-fields", "api_key")
	z3 := waitVersion(ctx, t, c, "zerodha", 3, nil)
	if z3.Fields["api_key"] != values["key2"] || z3.Fields["api_secret"] != values["secret1"] {
		t.Fatal("version 3 not decrypted after min_decryption_version 2")
	}
	deadline := time.Now().Add(10 * time.Second)
	for verifies.Load() != v0+1 || notifies.Load() != n0+1 {
		if time.Now().After(deadline) {
			t.Fatalf("a real rotation: verify %d, notify %d; want %d, %d", verifies.Load(), notifies.Load(), v0+1, n0+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	prev, err := c.GetPrevious(ctx, "zerodha")
	if err != nil || prev.Version != 2 || prev.Fields["api_key"] != values["key1"] {
		t.Fatalf("previous version: %v %v", prev, err)
	}
	if h, err := c.Health(ctx); err != nil || h.Credentials["zerodha"].LastError != "" {
		t.Fatalf("health after the raise: %+v %v", h, err)
	}

	metrics := httpGet(t, "http://"+listen+"/metrics")
	_ = agent.Process.Signal(syscall.SIGTERM)
	_ = agent.Wait()
	auditLog, _ := os.ReadFile(auditFile)
	if !bytes.Contains(auditLog, []byte(`"detail":"previous version"`)) {
		t.Errorf("the read of the previous version is not audited")
	}
	for where, b := range map[string][]byte{"agent stdout": stdout.Bytes(), "agent stderr": stderr.Bytes(), "audit": auditLog, "creds output": cliOut.Bytes(), "metrics": []byte(metrics)} {
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s contains a value (%.12s…)", where, v)
			}
		}
		if bytes.Contains(b, []byte(vault.RootToken)) {
			t.Errorf("%s contains the Vault token", where)
		}
	}
}

// waitMetric waits until the agent's /metrics shows series at value.
func waitMetric(t *testing.T, listen, series string, value float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		for line := range strings.Lines(httpGet(t, "http://"+listen+"/metrics")) {
			if rest, ok := strings.CutPrefix(line, series+" "); ok {
				last = strings.TrimSpace(rest)
				if v, err := strconv.ParseFloat(last, 64); err == nil && v == value {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q; want %v", series, last, value)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
