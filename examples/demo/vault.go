package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

const (
	transitKey  = "demo-partners" // derived: one partner's ciphertext is useless under another's context
	partner     = "acme"          // the derived-key context
	agentPolicy = `
# What the demo's agent may do: read its partner's prefix, decrypt with the
# partners' key. Nothing else.
path "secret/data/demo/*"     { capabilities = ["read"] }
path "secret/metadata/demo/*" { capabilities = ["read"] }
path "transit/decrypt/demo-partners" { capabilities = ["update"] }
`
)

// vaultDev is a `vault server -dev` the demo started.
type vaultDev struct {
	addr, root string
	proc       *child
}

func (v *vaultDev) stop() { _ = v.proc.stop() }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startVaultAgent starts a Vault dev server, sets it up the way
// manifests/vault/setup.sh does a real one (Transit key with derived keys,
// a least-privilege policy for the agent), writes the demo credentials with
// `credlet-agent creds put --transit`, and runs the agent on Vault.
func (d *demo) startVaultAgent(ctx context.Context) error {
	d.steps = 10
	d.say("starting a Vault dev server (%s) on 127.0.0.1", d.o.vault)
	port, err := freePort()
	if err != nil {
		return err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	v := &vaultDev{addr: fmt.Sprintf("http://127.0.0.1:%d", port), root: "FAKE-demo-root-" + hex.EncodeToString(b)}
	cmd := exec.CommandContext(ctx, d.o.vault, "server", "-dev", "-dev-root-token-id="+v.root,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port), "-dev-no-store-token")
	// HOME in the work dir: nothing of the developer's (~/.vault-token) is read or written.
	cmd.Env = append(cleanEnv(), "HOME="+d.dir, "VAULT_DISABLE_MLOCK=true")
	if v.proc, err = start(d, "vault", cmd, func(string) bool { return d.o.verbose }); err != nil {
		return err
	}
	d.vault = v
	c, err := api.NewClient(&api.Config{Address: v.addr, Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	c.SetToken(v.root)
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c.Sys().HealthWithContext(ctx)
		if err == nil && h.Initialized && !h.Sealed {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("vault did not become healthy: %v\n%s", err, tail(v.proc.output(), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.note("Vault %s ready; KV v2 at secret/", v.addr)

	d.say("setting Vault up: Transit key %q with derived keys, a policy that lets the agent read only\n      secret/demo/* and decrypt with that key, and a token for the agent carrying only that policy", transitKey)
	if err := c.Sys().MountWithContext(ctx, "transit", &api.MountInput{Type: "transit"}); err != nil {
		return fmt.Errorf("mount transit: %w", err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, "transit/keys/"+transitKey, map[string]any{"derived": true}); err != nil {
		return fmt.Errorf("create transit key: %w", err)
	}
	if err := c.Sys().PutPolicyWithContext(ctx, "credlet-demo-agent", agentPolicy); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	tok, err := c.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
		Policies: []string{"credlet-demo-agent"}, TTL: "1h", NoDefaultPolicy: false, DisplayName: "credlet-demo-agent",
	})
	if err != nil {
		return fmt.Errorf("agent token: %w", err)
	}
	tokenFile := d.path("agent.token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken), 0o600); err != nil {
		return err
	}
	d.tokens = append(d.tokens, v.root, tok.Auth.ClientToken)

	// The operator's CLI uses the root token (VAULT_TOKEN); the agent its own.
	d.credsArgs = []string{"--vault-addr", v.addr}
	d.credsEnv = append(cleanEnv(), "VAULT_TOKEN="+v.root, "HOME="+d.dir)
	fmt.Println("      writing the demo credentials; both fields encrypted with Transit under partner context \"acme\":")
	var files []string
	for _, f := range []string{"api_key", "api_secret"} {
		p, err := d.writeValue("new-"+f, d.fakeValue(f, 1))
		if err != nil {
			return err
		}
		files = append(files, f+"=@"+p)
	}
	if _, err := d.creds(ctx, "", append([]string{"put", "secret/demo/exchange"}, append(files, "--transit", transitKey, "--context", partner)...)...); err != nil {
		return err
	}
	rt, err := d.writeValue("new-refresh-token", d.fakeValue("refresh_token", 1))
	if err != nil {
		return err
	}
	if _, err := d.creds(ctx, "", "put", "secret/demo/broker-oauth", "refresh_token=@"+rt); err != nil {
		return err
	}
	for _, f := range []string{"new-api_key", "new-api_secret", "new-refresh-token"} {
		_ = os.Remove(d.path(f))
	}
	s, err := c.KVv2("secret").Get(ctx, "demo/exchange")
	if err != nil {
		return err
	}
	for _, f := range []string{"api_key", "api_secret"} {
		ct, _ := s.Data[f].(string)
		if !strings.HasPrefix(ct, "vault:v1:") {
			return fmt.Errorf("field %s is not Transit ciphertext in KV", f)
		}
		d.note("KV v2 holds %s = %.16s… (ciphertext; only context %q decrypts it)", f, ct, partner)
	}

	d.say("starting the agent on Vault: token auth (dev only; pods use Kubernetes auth), polling metadata every second")
	d.socket = d.path("run/agent.sock")
	d.secrets = d.path("secrets")
	for _, dir := range []string{filepath.Dir(d.socket), d.secrets} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	metrics, err := freePort()
	if err != nil {
		return err
	}
	args := []string{"run", "--vault-addr", v.addr, "--auth", "token", "--vault-token-file", tokenFile,
		"--credential", "exchange=secret/demo/exchange;transit=" + transitKey + ";context=" + partner + ";fields=api_key,api_secret;format=env",
		"--credential", "broker-oauth=secret/demo/broker-oauth;fields=refresh_token",
		"--secrets-dir", d.secrets, "--socket", d.socket, "--listen", "127.0.0.1:" + strconv.Itoa(metrics),
		"--audit-file", d.auditPath(), "--refresh", "1s", "--notify", "signal:SIGHUP:legacy-app", "--log-format", "text"}
	fmt.Printf("      $ credlet-agent %s\n", strings.Join(quoteAll(args), " "))
	agentCmd := exec.CommandContext(ctx, d.agentBin, args...)
	agentCmd.Env = append(cleanEnv(), "HOME="+d.dir)
	agent, err := start(d, "agent", agentCmd, d.showAgent)
	if err != nil {
		return err
	}
	d.agent = agent
	return d.waitReady(ctx, agent)
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if strings.ContainsAny(a, " ;") {
			out[i] = "'" + a + "'"
		}
	}
	return out
}
