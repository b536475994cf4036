package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/credlet/credlet/internal/creds"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/testenv"
)

// The fleet phase's Vault set-up: what manifests/vault/setup.sh makes for
// one partner, whose namespace holds one ServiceAccount per agent.
const (
	fleetPartner    = "fleet"            // PARTNERS: the namespace, and the KV prefix partners/fleet/
	fleetRole       = "credlet-partner"  // setup.sh's ROLE, on the kubernetes and the jwt mount
	fleetTransitKey = "credlet-partners" // setup.sh's TRANSIT_KEY (derived; context = partner)
	fleetProbeSet   = "probe"            // read only by the latency prober
)

var fleetSets = []string{"set1", "set2", "set3"}

// fleetEnv is the fleet phase's own Vault (audited to one file) and
// apiserver, configured by setup.sh, with one identity per agent.
type fleetEnv struct {
	vault     *testenv.Vault
	kube      *testenv.Kube
	dir       string
	auditPath string
	tokens    []string // TokenRequest tokens (audience vault) of ServiceAccounts fleet/agent-NNNN
	// grantedTTL is the TTL the partner role granted the prober's login.
	grantedTTL time.Duration
}

// startFleetEnv starts Vault and the apiserver, runs setup.sh against them
// (Kubernetes auth with a token reviewer, jwt auth from the issuer's public
// keys, the templated partner policies, the derived Transit key), creates
// identities ServiceAccounts with a token each, and writes the credential
// sets (api_secret Transit-encrypted under the partner's context). On error
// what was started is stopped.
func startFleetEnv(ctx context.Context, dir, setupSh string, identities int, logf func(string, ...any)) (fe *fleetEnv, err error) {
	fe = &fleetEnv{dir: dir, auditPath: filepath.Join(dir, "vault-audit.log")}
	defer func() {
		if err != nil {
			fe.close()
			fe = nil
		}
	}()
	if fe.vault, err = testenv.StartVault(ctx); err != nil {
		return fe, err
	}
	if err = fe.vault.EnableFileAudit(fe.auditPath); err != nil {
		return fe, err
	}
	logf("fleet: starting etcd and kube-apiserver")
	if fe.kube, err = testenv.StartKube(ctx); err != nil {
		return fe, err
	}
	if err = fe.setup(ctx, setupSh); err != nil {
		return fe, err
	}
	logf("fleet: %d ServiceAccounts with a TokenRequest token each", identities)
	if fe.tokens, err = fe.identities(ctx, identities); err != nil {
		return fe, err
	}
	return fe, fe.writeSets(ctx)
}

func (fe *fleetEnv) close() {
	if fe.kube != nil {
		_ = fe.kube.Stop()
	}
	if fe.vault != nil {
		_ = fe.vault.Stop()
	}
}

// setup runs manifests/vault/setup.sh as an operator would, with the
// apiserver's reviewer token, CA and issuer keys in files.
func (fe *fleetEnv) setup(ctx context.Context, setupSh string) error {
	vaultBin, err := testenv.Binary(testenv.BinVault)
	if err != nil {
		return err
	}
	k := fe.kube
	reviewer, err := k.ReviewerToken(ctx)
	if err != nil {
		return err
	}
	issuer, keys, err := k.Issuer(ctx)
	if err != nil {
		return err
	}
	files := map[string]string{"ca.crt": string(k.Config.CAData), "reviewer.jwt": reviewer, "sa.pub": strings.Join(keys, "")}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(fe.dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, "bash", setupSh)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + fe.dir,
		"VAULT=" + vaultBin, "VAULT_ADDR=" + fe.vault.Addr, "VAULT_TOKEN=" + fe.vault.RootToken,
		"PARTNERS=" + fleetPartner, "ROLE=" + fleetRole, "TRANSIT_KEY=" + fleetTransitKey,
		"K8S_HOST=" + k.Config.Host, "K8S_CA_CERT=" + filepath.Join(fe.dir, "ca.crt"),
		"TOKEN_REVIEWER_JWT=" + filepath.Join(fe.dir, "reviewer.jwt"),
		"JWT_ISSUER=" + issuer, "JWT_PUBKEYS=" + filepath.Join(fe.dir, "sa.pub")}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", setupSh, err, tail(string(out), 600))
	}
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// identities creates ServiceAccounts fleet/agent-0000… and a 1 h token of
// each with audience vault, as a projected token would be: 8 at a time.
func (fe *fleetEnv) identities(ctx context.Context, n int) ([]string, error) {
	k := fe.kube
	if err := k.EnsureNamespace(ctx, fleetPartner); err != nil {
		return nil, err
	}
	tokens := make([]string, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sa := fmt.Sprintf("agent-%04d", i)
				err := k.CreateServiceAccount(ctx, fleetPartner, sa)
				if err == nil {
					tokens[i], err = k.TokenRequest(ctx, fleetPartner, sa, testenv.KubernetesAudience, time.Hour)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d of %d identities failed, first: %w", len(errs), n, errs[0])
	}
	return tokens, nil
}

// writeSets writes the three credential sets and the prober's, each with
// a plain api_key and a Transit-encrypted api_secret, through the operator
// CLI's code.
func (fe *fleetEnv) writeSets(ctx context.Context) error {
	ob, err := creds.NewVault(creds.VaultConfig{Addr: fe.vault.Addr, Getenv: func(k string) string {
		if k == "VAULT_TOKEN" {
			return fe.vault.RootToken
		}
		return ""
	}})
	if err != nil {
		return err
	}
	defer ob.Close()
	for _, s := range append(append([]string(nil), fleetSets...), fleetProbeSet) {
		fields := map[string][]byte{"api_key": []byte("FAKE-fleet-key-" + s), "api_secret": []byte("FAKE-fleet-secret-" + s)}
		if _, err := creds.Put(ctx, ob, fleetKVPath(s), fields,
			creds.WriteOptions{TransitKey: fleetTransitKey, Context: fleetPartner, TransitFields: []string{"api_secret"}}); err != nil {
			return fmt.Errorf("write %s: %w", fleetKVPath(s), err)
		}
	}
	return nil
}

func fleetKVPath(set string) string { return testenv.KVMount + "/partners/" + fleetPartner + "/" + set }

// fleetCreds are the --credential values of a fleet agent.
func fleetCreds() []string {
	var out []string
	for _, s := range fleetSets {
		out = append(out, fmt.Sprintf("%s=%s;transit=%s;context=%s", s, fleetKVPath(s), fleetTransitKey, fleetPartner))
	}
	return out
}

func fleetCredspecs() ([]credspec.Credential, error) {
	var out []credspec.Credential
	for _, s := range fleetCreds() {
		c, err := credspec.Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// writeToken writes identity i's token into dir/name (0600) and returns
// the path.
func (fe *fleetEnv) writeToken(dir string, i int) (string, error) {
	if i >= len(fe.tokens) {
		return "", errors.New("fleet: not enough identities")
	}
	p := filepath.Join(dir, "token")
	return p, os.WriteFile(p, []byte(fe.tokens[i]), 0o600)
}
