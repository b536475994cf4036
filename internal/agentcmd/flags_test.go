package agentcmd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestRunFlags(t *testing.T) {
	base := []string{"--vault-addr", "http://127.0.0.1:8200", "--role", "bot", "--credential", "zerodha=secret/partners/acme/zerodha"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c RunConfig)
		wantErr string
	}{
		{
			name: "defaults",
			args: base,
			check: func(t *testing.T, c RunConfig) {
				if c.Auth != "kubernetes" || c.AuthMount != "kubernetes" || c.Refresh != 10*time.Second || c.RenewAt != 0.8 ||
					c.FileMode != 0o400 || c.Socket != "/credlet/run/agent.sock" || c.SecretsDir != "/credlet/secrets" || c.Listen != ":9102" {
					t.Fatalf("defaults wrong: %+v", c)
				}
			},
		},
		{
			name: "environment fills what the command line leaves out",
			args: []string{"--role", "bot"},
			env: map[string]string{"CREDLET_VAULT_ADDR": "http://127.0.0.1:1", "CREDLET_REFRESH": "3s",
				"CREDLET_CREDENTIAL": "a=secret/x\nb=secret/y;format=env", "CREDLET_ROLE": "ignored"},
			check: func(t *testing.T, c RunConfig) {
				if c.VaultAddr != "http://127.0.0.1:1" || c.Refresh != 3*time.Second || len(c.Credentials) != 2 || c.Role != "bot" {
					t.Fatalf("env not applied (or overrode a flag): %+v", c)
				}
			},
		},
		{
			name: "jwt: mount defaults to jwt, token file as for kubernetes",
			args: append(base, "--auth", "jwt"),
			check: func(t *testing.T, c RunConfig) {
				if c.Auth != "jwt" || c.AuthMount != "jwt" || c.Role != "bot" || c.TokenFile != "/var/run/secrets/credlet/token" {
					t.Fatalf("jwt config: %+v", c)
				}
			},
		},
		{
			name: "jwt with another mount",
			args: append(base, "--auth", "jwt", "--auth-mount", "jwt-prod"),
			check: func(t *testing.T, c RunConfig) {
				if c.AuthMount != "jwt-prod" {
					t.Fatalf("auth mount %q", c.AuthMount)
				}
			},
		},
		{
			name: "VAULT_ADDR honoured",
			args: []string{"--role", "r", "--credential", "a=secret/x"},
			env:  map[string]string{"VAULT_ADDR": "http://127.0.0.1:2"},
			check: func(t *testing.T, c RunConfig) {
				if c.VaultAddr != "http://127.0.0.1:2" {
					t.Fatalf("VAULT_ADDR ignored: %q", c.VaultAddr)
				}
			},
		},
		{
			name: "id lists",
			args: append(base, "--allow-uid", "1000, 1001", "--allow-gid", "2000"),
			check: func(t *testing.T, c RunConfig) {
				if len(c.AllowUIDs) != 2 || c.AllowUIDs[1] != 1001 || len(c.AllowGIDs) != 1 {
					t.Fatalf("ids: %v %v", c.AllowUIDs, c.AllowGIDs)
				}
			},
		},
		{name: "bad credential", args: []string{"--role", "r", "--vault-addr", "x", "--credential", "a=secret/../x"}, wantErr: "--credential"},
		{name: "duplicate credential", args: append(base, "--credential", "zerodha=secret/other"), wantErr: `credential "zerodha" given twice`},
		{name: "unknown flag", args: append(base, "--vault-adr", "x"), wantErr: "unknown flag --vault-adr"},
		{name: "bad duration", args: append(base, "--refresh", "soon"), wantErr: "--refresh"},
		{name: "refresh too small", args: append(base, "--refresh", "1ms"), wantErr: "allowed 100ms to 24h"},
		{name: "bad auth", args: append(base, "--auth", "ldap"), wantErr: "allowed kubernetes, jwt, approle, token"},
		{name: "jwt needs role", args: []string{"--vault-addr", "x", "--credential", "a=secret/x", "--auth", "jwt"}, wantErr: "--role is required with --auth jwt"},
		{name: "approle needs files", args: append(base, "--auth", "approle"), wantErr: "--role-id-file and --secret-id-file"},
		{name: "kubernetes needs role", args: []string{"--vault-addr", "x", "--credential", "a=secret/x"}, wantErr: "--role is required"},
		{name: "no credentials", args: []string{"--vault-addr", "x", "--role", "r"}, wantErr: "at least one"},
		{name: "world-writable mode", args: append(base, "--file-mode", "0666"), wantErr: "--file-mode"},
		{name: "bad uid", args: append(base, "--allow-uid", "root"), wantErr: "not a numeric id"},
		{name: "bad env value names the variable", args: base, env: map[string]string{"CREDLET_RENEW_AT": "most"}, wantErr: "CREDLET_RENEW_AT"},
		{name: "renew-at out of range", args: append(base, "--renew-at", "1.5"), wantErr: "allowed 0.1 to 0.95"},
		{name: "nothing delivers", args: append(base, "--socket", "", "--secrets-dir", ""), wantErr: "nothing would deliver"},
		{name: "once without files", args: append(base, "--once", "--secrets-dir", ""), wantErr: "--once writes the files and exits, but --secrets-dir is empty"},
		{name: "bad log level", args: append(base, "--log-level", "loud"), wantErr: "allowed debug, info, warn, error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg RunConfig
			getenv := envOf(tt.env)
			fs := newRunFlags(&cfg, getenv)
			err := parseFlags(fs, tt.args, getenv)
			if err == nil {
				err = cfg.validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if !errors.Is(err, errUsage) {
					t.Fatalf("error %v is not a usage error (exit 2)", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestMainExitCodes(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"run", "--refresh", "x"}, 2, "--refresh"},
		{[]string{"run", "--help"}, 0, ""},
		{[]string{"get", "--help"}, 0, ""},
		{[]string{"run", "--role=r", "--vault-addr=http://127.0.0.1:1", "--credential=a=secret/x", "--once", "--secrets-dir="}, 2, "--once writes the files"},
		{[]string{"audit"}, 2, "usage: credlet-agent audit verify FILE"},
		{[]string{"audit", "verify", "/nonexistent/audit.log"}, 1, "no such file"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := Main(tt.args, strings.NewReader(""), &out, &errb)
		if code != tt.code || !strings.Contains(errb.String(), tt.inStderr) {
			t.Errorf("Main(%q) = %d, stderr %q; want %d and %q", tt.args, code, errb.String(), tt.code, tt.inStderr)
		}
		if strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
			t.Errorf("Main(%q) stderr is not one line: %q", tt.args, errb.String())
		}
	}
}
