package annotation

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/credlet/credlet/internal/credspec"
)

// base is a minimal valid pod: one credential, kubernetes auth.
func base(extra ...string) map[string]string {
	m := map[string]string{
		"credlet.io/role":           "acme-bot",
		"credlet.io/credential.exa": "secret/partners/acme/exa",
		"example.test/other":        "ignored",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "<delete>" {
			delete(m, extra[i])
			continue
		}
		m[extra[i]] = extra[i+1]
	}
	return m
}

func ptr[T any](v T) *T { return &v }

func TestParse(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name string
		in   map[string]string
		want Spec
	}{
		{
			name: "minimal gets schema defaults only",
			in:   base(),
			want: Spec{
				Auth: AuthKubernetes, Role: "acme-bot",
				Credentials: []credspec.Credential{{Name: "exa", Mount: "secret", Path: "partners/acme/exa", Format: credspec.FormatFiles}},
				Delivery:    Delivery{Socket: true, Files: true},
			},
		},
		{
			name: "everything set",
			in: base(
				"credlet.io/credential.exa.transit-key", "acme",
				"credlet.io/credential.exa.context", "partner=acme",
				"credlet.io/credential.exa.fields", "api_key,api_secret",
				"credlet.io/credential.exa.format", "json",
				"credlet.io/credential.exa.optional", "true",
				"credlet.io/credential.b-2", "kv/data/partners/acme/b",
				"credlet.io/auth-mount", "k8s/prod",
				"credlet.io/vault-addr", "https://vault.example.test:8200",
				"credlet.io/delivery", "socket",
				"credlet.io/containers", "bot, sidecar",
				"credlet.io/uid", "1000",
				"credlet.io/gid", "0",
				"credlet.io/refresh", "30s",
				"credlet.io/verify-url", "http://127.0.0.1:8080/verify?x=1",
				"credlet.io/notify", "signal:SIGHUP:bot",
				"credlet.io/sidecar", "classic",
				"credlet.io/agent-cpu", "20m",
				"credlet.io/agent-memory", "48Mi",
				"credlet.io/log-level", "debug",
				"credlet.io/status", "injected",
			),
			want: Spec{
				Status: "injected", Auth: AuthKubernetes, Role: "acme-bot", AuthMount: "k8s/prod",
				VaultAddr: "https://vault.example.test:8200",
				Credentials: []credspec.Credential{
					{Name: "b-2", Mount: "kv", Path: "partners/acme/b", Format: credspec.FormatFiles},
					{Name: "exa", Mount: "secret", Path: "partners/acme/exa", TransitKey: "acme", Context: "partner=acme",
						Fields: []string{"api_key", "api_secret"}, Format: credspec.FormatJSON, Optional: true},
				},
				Delivery:   Delivery{Socket: true},
				Containers: []string{"bot", "sidecar"},
				UID:        ptr(int64(1000)), GID: ptr(int64(0)),
				Refresh:   30 * time.Second,
				VerifyURL: "http://127.0.0.1:8080/verify?x=1",
				Notify:    "signal:SIGHUP:bot",
				Sidecar:   SidecarClassic,
				AgentCPU:  ptr(q("20m")), AgentMemory: ptr(q("48Mi")),
				LogLevel: "debug",
			},
		},
		{
			name: "approle",
			in:   base("credlet.io/role", "<delete>", "credlet.io/auth", "approle", "credlet.io/approle-secret", "acme-approle"),
			want: Spec{
				Auth: AuthAppRole, AppRoleSecret: "acme-approle",
				Credentials: []credspec.Credential{{Name: "exa", Mount: "secret", Path: "partners/acme/exa", Format: credspec.FormatFiles}},
				Delivery:    Delivery{Socket: true, Files: true},
			},
		},
		{
			name: "jwt",
			in:   base("credlet.io/auth", "jwt", "credlet.io/auth-mount", "jwt-prod"),
			want: Spec{
				Auth: AuthJWT, Role: "acme-bot", AuthMount: "jwt-prod",
				Credentials: []credspec.Credential{{Name: "exa", Mount: "secret", Path: "partners/acme/exa", Format: credspec.FormatFiles}},
				Delivery:    Delivery{Socket: true, Files: true},
			},
		},
		{
			name: "optional false and files,socket",
			in:   base("credlet.io/credential.exa.optional", "false", "credlet.io/delivery", "files,socket", "credlet.io/notify", "http:http://127.0.0.1:9000/reload"),
			want: Spec{
				Auth: AuthKubernetes, Role: "acme-bot",
				Credentials: []credspec.Credential{{Name: "exa", Mount: "secret", Path: "partners/acme/exa", Format: credspec.FormatFiles}},
				Delivery:    Delivery{Socket: true, Files: true},
				Notify:      "http:http://127.0.0.1:9000/reload",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
				t.Errorf("Spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseDenials(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		wantKey string   // the key every denial must name
		want    []string // substrings of the message
	}{
		{"typo suggests the key", base("credlet.io/rol", "x"), "credlet.io/rol", []string{"unknown annotation", "did you mean credlet.io/role?"}},
		{"typo in credential option", base("credlet.io/credential.exa.transit-kye", "k"), "credlet.io/credential.exa.transit-kye", []string{"did you mean credlet.io/credential.exa.transit-key?"}},
		{"inject as annotation", base("credlet.io/inject", "true"), "credlet.io/inject", []string{"is a label"}},
		{"bad auth", base("credlet.io/auth", "token"), "credlet.io/auth", []string{`"token"`, "allowed: kubernetes, jwt, approle"}},
		{"bad delivery", base("credlet.io/delivery", "sockets"), "credlet.io/delivery", []string{"allowed: socket,files, socket, files"}},
		{"bad refresh", base("credlet.io/refresh", "100ms"), "credlet.io/refresh", []string{"from 1s to 24h"}},
		{"bad uid root", base("credlet.io/uid", "0"), "credlet.io/uid", []string{"from 1 to 2147483647"}},
		{"bad uid text", base("credlet.io/uid", "+12"), "credlet.io/uid", []string{"from 1 to 2147483647"}},
		{"bad gid", base("credlet.io/gid", "-1"), "credlet.io/gid", []string{"from 0 to"}},
		{"bad sidecar", base("credlet.io/sidecar", "Native"), "credlet.io/sidecar", []string{"native, classic"}},
		{"bad cpu", base("credlet.io/agent-cpu", "10"), "credlet.io/agent-cpu", []string{"1m to 4"}},
		{"bad memory", base("credlet.io/agent-memory", "1Mi"), "credlet.io/agent-memory", []string{"16Mi to 1Gi"}},
		{"bad log level", base("credlet.io/log-level", "trace"), "credlet.io/log-level", []string{"debug, info, warn, error"}},
		{"bad status", base("credlet.io/status", "done"), "credlet.io/status", []string{"allowed: injected"}},
		{"bad vault addr", base("credlet.io/vault-addr", "ftp://vault"), "credlet.io/vault-addr", []string{"scheme must be http or https"}},
		{"vault addr user info", base("credlet.io/vault-addr", "https://u:p@vault.example.test"), "credlet.io/vault-addr", []string{"user info"}},
		{"bad verify url", base("credlet.io/verify-url", "/verify"), "credlet.io/verify-url", []string{"loopback"}},
		{"verify url not loopback", base("credlet.io/verify-url", "http://bot.example.test/verify"), "credlet.io/verify-url", []string{"not loopback"}},
		{"bad notify signal", base("credlet.io/notify", "signal:SIGKILL:bot"), "credlet.io/notify", []string{`signal "SIGKILL"`}},
		{"bad notify kind", base("credlet.io/notify", "exec:/bin/sh"), "credlet.io/notify", []string{"signal:SIGNAL:PROCESS"}},
		{"bad containers", base("credlet.io/containers", "Bot"), "credlet.io/containers", []string{`"Bot"`}},
		{"dup containers", base("credlet.io/containers", "a,a"), "credlet.io/containers", []string{"listed twice"}},
		{"bad approle secret", base("credlet.io/role", "<delete>", "credlet.io/auth", "approle", "credlet.io/approle-secret", "Bad_Name"), "credlet.io/approle-secret", []string{"DNS-1123"}},
		{"bad auth mount", base("credlet.io/auth-mount", "a/../b"), "credlet.io/auth-mount", []string{"Vault path"}},
		{"bad role", base("credlet.io/role", "has space"), "credlet.io/role", []string{"Vault role name"}},
		{"bad credential name", base("credlet.io/credential.Exa", "secret/a/b"), "credlet.io/credential.Exa", []string{"lower-case"}},
		{"bad credential path", base("credlet.io/credential.exa", "secret/../etc"), "credlet.io/credential.exa", []string{"KV path"}},
		{"mount only", base("credlet.io/credential.exa", "secret"), "credlet.io/credential.exa", []string{"MOUNT/PATH"}},
		{"bad format", base("credlet.io/credential.exa.format", "yaml"), "credlet.io/credential.exa.format", []string{"files, json, env"}},
		{"bad optional", base("credlet.io/credential.exa.optional", "yes"), "credlet.io/credential.exa.optional", []string{"true, false"}},
		{"bad fields", base("credlet.io/credential.exa.fields", "a,,b"), "credlet.io/credential.exa.fields", []string{"field"}},
		{"bad transit key", base("credlet.io/credential.exa.transit-key", "a/b"), "credlet.io/credential.exa.transit-key", []string{"transit key"}},
		{"context with semicolon", base("credlet.io/credential.exa.transit-key", "k", "credlet.io/credential.exa.context", "a;b"), "credlet.io/credential.exa.context", []string{"without ';'"}},
		{"context without key", base("credlet.io/credential.exa.context", "acme"), "credlet.io/credential.exa.context", []string{"needs credlet.io/credential.exa.transit-key"}},
		{"option without path", base("credlet.io/credential.other.format", "json"), "credlet.io/credential.other.format", []string{"given without credlet.io/credential.other"}},
		{"unknown credential option", base("credlet.io/credential.exa.mode", "x"), "credlet.io/credential.exa.mode", []string{"unknown annotation"}},
		{"no credential", base("credlet.io/credential.exa", "<delete>"), "credlet.io/credential.<name>", []string{"at least one"}},
		{"kubernetes needs role", base("credlet.io/role", "<delete>"), "credlet.io/role", []string{"required when credlet.io/auth is kubernetes"}},
		{"jwt needs role", base("credlet.io/role", "<delete>", "credlet.io/auth", "jwt"), "credlet.io/role", []string{"required when credlet.io/auth is jwt"}},
		{"jwt refuses secret", base("credlet.io/auth", "jwt", "credlet.io/approle-secret", "s"), "credlet.io/approle-secret", []string{"only used when"}},
		{"approle needs secret", base("credlet.io/role", "<delete>", "credlet.io/auth", "approle"), "credlet.io/approle-secret", []string{"required"}},
		{"approle refuses role", base("credlet.io/auth", "approle", "credlet.io/approle-secret", "s"), "credlet.io/role", []string{"only used when"}},
		{"kubernetes refuses secret", base("credlet.io/approle-secret", "s"), "credlet.io/approle-secret", []string{"only used when"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil {
				t.Fatal("Parse succeeded, want a denial")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error %T is not *Error with problems", err)
			}
			if e.Problems[0].Key != tt.wantKey {
				t.Errorf("first problem names %q, want %q (%v)", e.Problems[0].Key, tt.wantKey, err)
			}
			msg := err.Error()
			for _, w := range append(tt.want, tt.wantKey) {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse(base("credlet.io/refresh", "x", "credlet.io/sidecar", "y", "credlet.io/colour", "z"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v", err)
	}
	var keys []string
	for _, p := range e.Problems {
		keys = append(keys, p.Key)
	}
	want := []string{"credlet.io/colour", "credlet.io/refresh", "credlet.io/sidecar"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

// TestDenialStaysReadable: however many annotations are wrong, the denial
// names the first ones, counts the rest, lists the known keys once, and
// fits in 4 KiB.
func TestDenialStaysReadable(t *testing.T) {
	m := base()
	for i := range 500 {
		m[fmt.Sprintf("credlet.io/x%03d", i)] = strings.Repeat("v", 300)
	}
	m["credlet.io/"+strings.Repeat("k", 300)] = "v"
	_, err := Parse(m)
	if err == nil {
		t.Fatal("allowed")
	}
	msg := err.Error()
	if len(msg) > 4096 {
		t.Errorf("message is %d bytes", len(msg))
	}
	for _, want := range []string{"and 491 more", "Known keys under credlet.io/: credential.<name>"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %.300s", want, msg)
		}
	}
	if n := strings.Count(msg, "Known keys"); n != 1 {
		t.Errorf("known keys listed %d times", n)
	}
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 501 {
		t.Errorf("problems not all kept for callers")
	}
}

func TestDefaultsParse(t *testing.T) {
	for _, f := range schema {
		if f.Default == "" {
			continue
		}
		p := &state{creds: map[string]*credInput{}}
		if err := f.parse(p, "x", f.Default); err != nil {
			t.Errorf("%s: default %q does not parse: %v", f.Key, f.Default, err)
		}
	}
}

func TestSchemaComplete(t *testing.T) {
	for _, f := range schema {
		if f.Key == "" || f.Allowed == "" || f.Doc == "" || f.parse == nil || (f.Default == "" && f.DefaultDoc == "") {
			t.Errorf("schema row %q is missing a column", f.Key)
		}
		if !strings.HasPrefix(f.Key, Prefix) {
			t.Errorf("schema key %q is outside %s", f.Key, Prefix)
		}
	}
}

// TestCredentialsRoundTrip: what the injector renders is what the agent's
// --credential parser reads back.
func TestCredentialsRoundTrip(t *testing.T) {
	spec, err := Parse(base(
		"credlet.io/credential.exa.transit-key", "acme",
		"credlet.io/credential.exa.context", "partner=acme,desk=1",
		"credlet.io/credential.exa.fields", "api_key",
		"credlet.io/credential.exa.format", "env",
		"credlet.io/credential.exa.optional", "true",
	))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range spec.Credentials {
		back, err := credspec.Parse(c.String())
		if err != nil {
			t.Fatalf("credspec.Parse(%q): %v", c.String(), err)
		}
		if diff := cmp.Diff(c, back); diff != "" {
			t.Errorf("round trip (-rendered +parsed):\n%s", diff)
		}
	}
}
