package agentcmd

import (
	"bytes"
	"strings"
	"testing"
)

// TestCredsLifecycleUsage: the lifecycle commands' flags go with their
// commands only, need Vault, and a misuse exits 2 with one line saying
// what is allowed (no Vault is contacted for any of these).
func TestCredsLifecycleUsage(t *testing.T) {
	key, src := fileSource(t)
	vault := []string{"--vault-addr", "http://127.0.0.1:1", "--vault-token-file", key} // never dialled
	tests := []struct {
		name     string
		args     []string
		inStderr string
	}{
		{"keys on the file source", []string{"creds", "keys", "k", "--source", src, "--master-key-file", key}, "creds keys needs Vault (--source vault)"},
		{"rewrap on the file source", []string{"creds", "rewrap", "secret/x", "--transit", "k", "--source", src, "--master-key-file", key}, "creds rewrap needs Vault"},
		{"expires-at on the file source", []string{"creds", "put", "secret/x", "a=-", "--expires-at", "2099-01-01T00:00:00Z", "--source", src, "--master-key-file", key}, "--expires-at needs Vault"},
		{"dry-run on history", append([]string{"creds", "history", "secret/x", "--dry-run"}, vault...), "--dry-run applies to rewrap, apply and rollback --journal"},
		{"journal on rewrap", append([]string{"creds", "rewrap", "secret/x", "--transit", "k", "--journal", "j"}, vault...), "--journal applies to apply and rollback"},
		{"max-age on rewrap", append([]string{"creds", "rewrap", "secret/x", "--transit", "k", "--max-age", "1h"}, vault...), "--max-age applies to keys"},
		{"bad max-age", append([]string{"creds", "keys", "k", "--max-age", "soon"}, vault...), "--max-age"},
		{"expires-at on rewrap", append([]string{"creds", "rewrap", "secret/x", "--transit", "k", "--expires-at", "none"}, vault...), "--expires-at applies to put and rotate"},
		{"transit on keys", append([]string{"creds", "keys", "k", "--transit", "k"}, vault...), "--transit and --context do not apply to keys"},
		{"transit-fields on rewrap", append([]string{"creds", "rewrap", "secret/x", "--transit", "k", "--transit-fields", "a"}, vault...), "rewrap takes --transit KEY [--context CTX] [--dry-run]"},
		{"rollback journal with a path", append([]string{"creds", "rollback", "secret/x", "--journal", "j"}, vault...), "no PATH or VERSION with --journal"},
		{"apply without a plan", append([]string{"creds", "apply"}, vault...), "usage: credlet-agent creds apply PLAN"},
		{"auth kubernetes without role", []string{"creds", "keys", "k", "--auth", "kubernetes", "--vault-addr", "http://127.0.0.1:1"}, "--auth kubernetes needs --role"},
		{"unknown auth", []string{"creds", "keys", "k", "--auth", "ldap", "--vault-addr", "http://127.0.0.1:1"}, `--auth "ldap": allowed token`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(tt.args, strings.NewReader("FAKE-v\n"), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tt.inStderr) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errb.String(), tt.inStderr)
			}
			if strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
				t.Errorf("stderr is not one line: %q", errb.String())
			}
		})
	}
}
