package injectorconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credlet/credlet/internal/annotation"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadErrors(t *testing.T) {
	const okNS = "namespaces:\n  a:\n    allowedPaths: [secret/a]\n"
	tests := []struct {
		name    string
		body    string
		flags   Settings
		wantErr string
	}{
		{"unknown field", "defaults:\n  agentImage: x\n  vaultAdr: https://v\n" + okNS, Settings{}, "unknown field"},
		{"unknown namespace field", "defaults:\n  agentImage: x\nnamespaces:\n  a:\n    allowedPath: [secret/a]\n", Settings{}, "unknown field"},
		{"no image", okNS, Settings{}, "no agent image"},
		{"flag conflicts with file", "defaults:\n  agentImage: x\n" + okNS, Settings{AgentImage: "y"}, "given twice"},
		{"no prefixes", "defaults:\n  agentImage: x\nnamespaces:\n  a: {}\n", Settings{}, "at least one prefix"},
		{"bad prefix", "defaults:\n  agentImage: x\nnamespaces:\n  a:\n    allowedPaths: [secret/../b]\n", Settings{}, "KV path prefix"},
		{"ambiguous data prefix", "defaults:\n  agentImage: x\nnamespaces:\n  a:\n    allowedPaths: [secret/data]\n", Settings{}, "ambiguous"},
		{"bad namespace", "defaults:\n  agentImage: x\nnamespaces:\n  A_b:\n    allowedPaths: [secret/a]\n", Settings{}, "namespace name or a glob"},
		{"bad vault addr", "defaults:\n  agentImage: x\n  vaultAddr: vault:8200\n" + okNS, Settings{}, "vaultAddr"},
		{"bad CA", "defaults:\n  agentImage: x\n  vaultCA: {configMap: a, secret: b}\n" + okNS, Settings{}, "exactly one"},
		{"bad sidecar", "defaults:\n  agentImage: x\n" + okNS + "    sidecar: sometimes\n", Settings{}, "namespaces.a: invalid injector config: sidecar"},
		{"small memory", "defaults:\n  agentImage: x\n  resources: {memory: 1Mi}\n" + okNS, Settings{}, "at least 16Mi"},
		{"bad quantity", "defaults:\n  agentImage: x\n  secretsSizeLimit: lots\n" + okNS, Settings{}, "quantities must match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.body), tt.flags)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestLoadFlagsOnly(t *testing.T) {
	c, err := Load("", Settings{AgentImage: "img", VaultAddr: "https://v.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Policy("default"); ok {
		t.Error("a namespace outside the config got a policy")
	}
	if c.Defaults.VaultAddr != "https://v.example.test" {
		t.Errorf("vault addr = %q", c.Defaults.VaultAddr)
	}
}

func TestPolicy(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "config.yaml"), Settings{AgentImage: "registry.example.test/credlet-agent:v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ns        string
		wantOK    bool
		wantEntry string
		check     func(t *testing.T, p Policy)
		allowed   [][2]string
		denied    [][2]string
	}{
		{
			ns: "partner-acme", wantOK: true, wantEntry: "partner-acme",
			check: func(t *testing.T, p Policy) {
				if !p.AllowIPCLock || p.Sidecar != annotation.SidecarNative || p.CPU.String() != "10m" || p.Memory.String() != "32Mi" {
					t.Errorf("policy = %+v", p)
				}
				if p.VaultCA == nil || p.VaultCA.ConfigMap != "vault-ca" || p.VaultCA.Key != "ca.crt" {
					t.Errorf("vault CA = %+v", p.VaultCA)
				}
			},
			allowed: [][2]string{{"secret", "partners/acme/exa"}, {"secret", "partners/acme"}, {"transitless", "acme/shared/x"}},
			denied:  [][2]string{{"secret", "partners/acme-evil/x"}, {"secret", "partners"}, {"other", "partners/acme/x"}, {"transitless", "acme/other"}},
		},
		{
			ns: "partner-zeta", wantOK: true, wantEntry: "partner-*",
			check: func(t *testing.T, p Policy) {
				if p.AllowIPCLock || p.Sidecar != annotation.SidecarClassic || p.Memory.String() != "64Mi" || p.VaultAddr != "https://vault.vault.svc:8200" {
					t.Errorf("policy = %+v", p)
				}
			},
			allowed: [][2]string{{"secret", "partners/shared/x"}},
			denied:  [][2]string{{"secret", "partners/acme/exa"}},
		},
		{
			ns: "dev", wantOK: true, wantEntry: "dev",
			check: func(t *testing.T, p Policy) {
				if p.VaultAddr != "http://vault-dev.example.test:8200" {
					t.Errorf("vault addr = %q", p.VaultAddr)
				}
			},
			allowed: [][2]string{{"secret", "anything/at/all"}},
			denied:  [][2]string{{"kv", "x"}},
		},
		{ns: "kube-system"},
		{ns: "partner"},
	}
	for _, tt := range tests {
		t.Run(tt.ns, func(t *testing.T) {
			p, ok := c.Policy(tt.ns)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if p.Entry != tt.wantEntry || p.Namespace != tt.ns {
				t.Errorf("entry %q namespace %q", p.Entry, p.Namespace)
			}
			tt.check(t, p)
			for _, a := range tt.allowed {
				if !p.Allows(a[0], a[1]) {
					t.Errorf("%s/%s denied, want allowed", a[0], a[1])
				}
			}
			for _, d := range tt.denied {
				if p.Allows(d[0], d[1]) {
					t.Errorf("%s/%s allowed, want denied", d[0], d[1])
				}
			}
		})
	}
}

func TestGlobPrecedence(t *testing.T) {
	c := &Config{Namespaces: map[string]Namespace{
		"*":         {AllowedPaths: []string{"secret/all"}},
		"team-*":    {AllowedPaths: []string{"secret/team"}},
		"team-a-*":  {AllowedPaths: []string{"secret/team-a"}},
		"team-a-ok": {AllowedPaths: []string{"secret/exact"}},
	}}
	for ns, want := range map[string]string{"x": "*", "team-b": "team-*", "team-a-x": "team-a-*", "team-a-ok": "team-a-ok"} {
		if p, _ := c.Policy(ns); p.Entry != want {
			t.Errorf("Policy(%q).Entry = %q, want %q", ns, p.Entry, want)
		}
	}
}
