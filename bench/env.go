package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// Token TTL for every agent's AppRole role: short, so several renewals fall
// inside the run and the renewal point can be measured from Vault's side.
const (
	benchTokenTTL    = 20 * time.Second
	benchTokenMaxTTL = time.Hour
	benchPolicy      = "credlet-bench"
)

// Roles, one per agent process, so the audit log tells them apart.
const (
	roleCredlet        = "bench-credlet"         // credlet-agent, --refresh 1s
	roleCredletDefault = "bench-credlet-default" // credlet-agent, default --refresh
	roleCredletLockAll = "bench-credlet-lockall" // credlet-agent with CAP_IPC_LOCK (mlockall)
	roleVaultAgent     = "bench-vault-agent"     // vault agent, render interval 1s
	roleStart          = "bench-start"           // start→first credential runs
)

// credSet is one credential set in Vault, bench/setN at KV v2 mount secret/.
type credSet struct {
	name string // set1
	path string // bench/set1
}

func (c credSet) kvPath() string   { return testenv.KVMount + "/" + c.path }          // secret/bench/set1
func (c credSet) dataPath() string { return testenv.KVMount + "/data/" + c.path }     // secret/data/bench/set1
func (c credSet) metaPath() string { return testenv.KVMount + "/metadata/" + c.path } // secret/metadata/bench/set1

// env is the Vault server and what the bench put in it.
type env struct {
	vault     *testenv.Vault
	dir       string // temp root, removed at the end
	auditPath string
	runID     string
	sets      []credSet

	mu      sync.Mutex
	values  [][]byte // every api_key value written to set1, oldest first
	version int      // set1's current version
	roles   map[string][2]string
}

func newEnv(ctx context.Context, dir string) (*env, error) {
	v, err := testenv.StartVault(ctx)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	e := &env{vault: v, dir: dir, runID: hex.EncodeToString(id), roles: map[string][2]string{}}
	for i := 1; i <= 3; i++ {
		e.sets = append(e.sets, credSet{name: fmt.Sprintf("set%d", i), path: fmt.Sprintf("bench/set%d", i)})
	}
	e.auditPath = filepath.Join(dir, "vault-audit.log")
	if err := v.EnableFileAudit(e.auditPath); err != nil {
		return e, err
	}
	policy := `path "secret/data/bench/*" { capabilities = ["read"] }
path "secret/metadata/bench/*" { capabilities = ["read"] }`
	if err := v.WritePolicy(benchPolicy, policy); err != nil {
		return e, err
	}
	for _, s := range e.sets {
		if _, err := e.rotate(ctx, s); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (e *env) close() {
	if e.vault != nil {
		_ = e.vault.Stop()
	}
}

// fields returns the fake values of a set at a version tag.
func (e *env) fields(s credSet, n int) map[string]any {
	return map[string]any{
		"api_key":      fmt.Sprintf("FAKE-api-key-%s-%s-%05d", s.name, e.runID, n),
		"api_secret":   fmt.Sprintf("FAKE-api-secret-%s-%s-%05d", s.name, e.runID, n),
		"access_token": fmt.Sprintf("FAKE-access-token-%s-%s-%05d", s.name, e.runID, n),
	}
}

// rotate writes a new KV v2 version of s and returns it.
func (e *env) rotate(ctx context.Context, s credSet) (int, error) {
	e.mu.Lock()
	n := len(e.values) + 1
	e.mu.Unlock()
	f := e.fields(s, n)
	sec, err := e.vault.Client().KVv2(testenv.KVMount).Put(ctx, s.path, f)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", s.kvPath(), err)
	}
	if s.name == "set1" {
		e.mu.Lock()
		e.values = append(e.values, []byte(f["api_key"].(string)))
		e.version = sec.VersionMetadata.Version
		e.mu.Unlock()
	}
	return sec.VersionMetadata.Version, nil
}

// current returns set1's current version and api_key value.
func (e *env) current() (int, []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version, e.values[len(e.values)-1]
}

// allValues returns every api_key value set1 ever had.
func (e *env) allValues() [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][]byte(nil), e.values...)
}

// appRole creates role (once) and writes its role_id and secret_id files
// into dir.
func (e *env) appRole(role, dir string) (roleIDFile, secretIDFile string, err error) {
	e.mu.Lock()
	ids, ok := e.roles[role]
	e.mu.Unlock()
	if !ok {
		rid, sid, err := e.vault.CreateAppRole(role, []string{benchPolicy}, benchTokenTTL, benchTokenMaxTTL)
		if err != nil {
			return "", "", err
		}
		ids = [2]string{rid, sid}
		e.mu.Lock()
		e.roles[role] = ids
		e.mu.Unlock()
	}
	roleIDFile, secretIDFile = filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	if err := os.WriteFile(roleIDFile, []byte(ids[0]), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(secretIDFile, []byte(ids[1]), 0o600); err != nil {
		return "", "", err
	}
	return roleIDFile, secretIDFile, nil
}

// versionOf extracts "version" from a credlet socket response.
func versionOf(body []byte) (int, error) {
	var r struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, err
	}
	return r.Version, nil
}
