package creds

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/testenv"
)

// backendCase opens a fresh backend and a path prefix no other test uses.
type backendCase struct {
	name string
	open func(t *testing.T) (Backend, string)
}

func fileBackend(t *testing.T) (Backend, string) {
	t.Helper()
	dir := t.TempDir()
	k, err := filesource.GenerateKey(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	b, err := NewFile(filepath.Join(dir, "credentials.enc"), filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, "secret/t"
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// testPrefix isolates a test's paths on the shared Vault.
func testPrefix(t *testing.T) string {
	return "secret/" + strings.ToLower(unsafeChars.ReplaceAllString(t.Name(), "-"))
}

func vaultWithToken(t *testing.T, token string) *Vault {
	t.Helper()
	b, err := NewVault(VaultConfig{Addr: vlt.Addr, Getenv: func(k string) string {
		if k == "VAULT_TOKEN" {
			return token
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func vaultBackend(t *testing.T) (Backend, string) {
	t.Helper()
	testenv.NeedServers(t)
	return vaultWithToken(t, vlt.RootToken), testPrefix(t)
}

var allBackends = []backendCase{{"file", fileBackend}, {"vault", vaultBackend}}

func vals(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

func mustRead(t *testing.T, b Backend, path string, version int) map[string]string {
	t.Helper()
	s, err := b.Read(context.Background(), path, version)
	if err != nil {
		t.Fatalf("read %s v%d: %v", path, version, err)
	}
	out := map[string]string{}
	for k, v := range s.Fields {
		out[k] = string(v)
	}
	return out
}

func wantKind(t *testing.T, err, kind error, msg string) {
	t.Helper()
	if !errors.Is(err, kind) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("err = %v, want %v containing %q", err, kind, msg)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	if strings.Contains(err.Error(), "FAKE") {
		t.Fatalf("error shows a value: %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	for _, bc := range allBackends {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			b, pre := bc.open(t)
			p := pre + "/acme/exchange"

			res, err := Put(ctx, b, p, vals("api_key", "FAKE-key-1", "api_secret", "FAKE-secret-1"), WriteOptions{})
			if err != nil || res.To != 1 || res.From != 0 {
				t.Fatalf("put: %+v %v", res, err)
			}
			_, err = Put(ctx, b, p, vals("api_key", "FAKE-key-x"), WriteOptions{})
			wantKind(t, err, ErrCASConflict, "already exists at version 1")

			res, err = Rotate(ctx, b, p, vals("api_key", "FAKE-key-2"), WriteOptions{})
			if err != nil || res.From != 1 || res.To != 2 || !slices.Equal(res.Kept, []string{"api_secret"}) {
				t.Fatalf("rotate: %+v %v", res, err)
			}
			if got := mustRead(t, b, p, 0); got["api_key"] != "FAKE-key-2" || got["api_secret"] != "FAKE-secret-1" {
				t.Fatalf("after rotate: %v", got)
			}
			res, err = Rotate(ctx, b, p, vals("api_key", "FAKE-key-3"), WriteOptions{Replace: true})
			if err != nil || res.To != 3 || !slices.Equal(res.Dropped, []string{"api_secret"}) {
				t.Fatalf("rotate --replace: %+v %v", res, err)
			}
			if got := mustRead(t, b, p, 0); len(got) != 1 {
				t.Fatalf("after replace: %d fields", len(got))
			}

			res, err = Revoke(ctx, b, p)
			if err != nil || res.From != 3 {
				t.Fatalf("revoke: %+v %v", res, err)
			}
			_, err = b.Read(ctx, p, 0)
			wantKind(t, err, ErrDeleted, "version 3 was revoked")
			_, err = Revoke(ctx, b, p)
			wantKind(t, err, ErrDeleted, "already revoked")
			_, err = Rollback(ctx, b, p, 3)
			wantKind(t, err, ErrDeleted, "version 3 was revoked")
			_, err = Rollback(ctx, b, p, 99)
			wantKind(t, err, ErrNotFound, "no version 99 (kept: 3, 2, 1)")

			res, err = Rollback(ctx, b, p, 2)
			if err != nil || res.From != 3 || res.To != 4 {
				t.Fatalf("rollback: %+v %v", res, err)
			}
			if got := mustRead(t, b, p, 0); got["api_key"] != "FAKE-key-2" || got["api_secret"] != "FAKE-secret-1" {
				t.Fatalf("after rollback: %v", got)
			}

			// Rotating a revoked version carries nothing over.
			if _, err := Revoke(ctx, b, p); err != nil {
				t.Fatal(err)
			}
			res, err = Rotate(ctx, b, p, vals("api_key", "FAKE-key-5"), WriteOptions{})
			if err != nil || res.To != 5 || !res.Revoked || len(res.Kept) != 0 {
				t.Fatalf("rotate after revoke: %+v %v", res, err)
			}

			m, err := b.Metadata(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			var states []string
			for _, v := range m.Versions {
				states = append(states, fmt.Sprintf("%d:%t", v.Version, v.Gone()))
			}
			if m.Current != 5 || strings.Join(states, " ") != "5:false 4:true 3:true 2:false 1:false" {
				t.Fatalf("history current=%d %v", m.Current, states)
			}

			if _, err := Put(ctx, b, pre+"/acme/oauth", vals("refresh_token", "FAKE-rt"), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			names, err := b.List(ctx, pre+"/acme")
			if err != nil || !slices.Equal(names, []string{"exchange", "oauth"}) {
				t.Fatalf("list: %v %v", names, err)
			}
			names, err = b.List(ctx, pre)
			if err != nil || !slices.Equal(names, []string{"acme/"}) {
				t.Fatalf("list parent: %v %v", names, err)
			}

			_, err = Rotate(ctx, b, pre+"/acme/nothing", vals("k", "FAKE"), WriteOptions{})
			wantKind(t, err, ErrNotFound, "use put to create it")
			_, err = b.Metadata(ctx, pre+"/acme/nothing")
			wantKind(t, err, ErrNotFound, "does not exist")
		})
	}
}

// racing lets another operator write between rotate's read and its write.
type racing struct {
	Backend
	once bool
}

func (r *racing) Write(ctx context.Context, path string, fields map[string][]byte, cas int) (int, error) {
	if !r.once {
		r.once = true
		if _, err := r.Backend.Write(ctx, path, vals("api_key", "FAKE-other-operator"), cas); err != nil {
			return 0, err
		}
	}
	return r.Backend.Write(ctx, path, fields, cas)
}

func TestRotateConflict(t *testing.T) {
	for _, bc := range allBackends {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			b, pre := bc.open(t)
			p := pre + "/race"
			if _, err := Put(ctx, b, p, vals("api_key", "FAKE-1"), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := Rotate(ctx, &racing{Backend: b}, p, vals("api_key", "FAKE-mine"), WriteOptions{})
			wantKind(t, err, ErrCASConflict, "expected version 1, it is now 2")
			if got := mustRead(t, b, p, 0); got["api_key"] != "FAKE-other-operator" {
				t.Fatal("the losing write overwrote the winner")
			}
			_, err = Put(ctx, b, p, vals("api_key", "FAKE-x"), WriteOptions{CAS: 1})
			wantKind(t, err, ErrCASConflict, "expected version 1, it is now 2")
		})
	}
}

func TestRunOutputNeverShowsValues(t *testing.T) {
	for _, bc := range allBackends {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			b, pre := bc.open(t)
			p := pre + "/out"
			var out, errb strings.Builder
			run := func(cmd string, stdin string, args ...string) error {
				out.Reset()
				errb.Reset()
				return Run(ctx, b, Invocation{Command: cmd, Args: args}, strings.NewReader(stdin), &out, &errb)
			}
			if err := run("put", "FAKE-stdin-secret\n", p, "api_key=-", "api_secret=FAKE-literal"); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "created "+p+" version 1") || !strings.Contains(errb.String(), "shell history") {
				t.Fatalf("put output %q / %q", out.String(), errb.String())
			}
			if err := run("rotate", "FAKE-rotated\n", p, "api_key=-"); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "version 2 on top of version 1") || !strings.Contains(out.String(), "kept: api_secret") {
				t.Fatalf("rotate output %q", out.String())
			}
			if err := run("history", "", p); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[1], "2 ") || !strings.HasSuffix(lines[1], "current") {
				t.Fatalf("history:\n%s", out.String())
			}
			if err := run("rollback", "", p, "1"); err != nil || !strings.Contains(out.String(), "version 1 re-published as version 3") {
				t.Fatalf("rollback: %v %q", err, out.String())
			}
			if err := run("revoke", "", p); err != nil || !strings.Contains(out.String(), "revoked "+p+" version 3") {
				t.Fatalf("revoke: %v %q", err, out.String())
			}
			if err := run("list", "", pre); err != nil || strings.TrimSpace(out.String()) != "out" {
				t.Fatalf("list: %v %q", err, out.String())
			}
			err := run("rollback", "", p, "x")
			wantKind(t, err, ErrUsage, "want a version number")
			err = run("frobnicate", "", p)
			wantKind(t, err, ErrUsage, "unknown creds command")
			err = Run(ctx, b, Invocation{Command: "rotate", Args: []string{p, "a=@/nonexistent"}, CASSet: true}, nil, &out, &errb)
			wantKind(t, err, ErrUsage, "--cas applies to put")
			if strings.Contains(out.String()+errb.String(), "FAKE") {
				t.Fatalf("output shows a value: %q %q", out.String(), errb.String())
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad source", Config{Source: "s3:x"}, `--source "s3:x": allowed vault or file:PATH`},
		{"file without key", Config{Source: "file:" + dir + "/c.enc"}, "--master-key-file is required"},
		{"file bad key", Config{Source: "file:" + dir + "/c.enc", MasterKeyFile: dir + "/nokey"}, "master key file"},
		{"vault without addr", Config{Source: "vault"}, "--vault-addr (or VAULT_ADDR) is required"},
		{"vault bad addr", Config{Vault: VaultConfig{Addr: "127.0.0.1:8200"}}, "want http(s)://HOST:PORT"},
		{"vault without token", Config{Vault: VaultConfig{Addr: "http://127.0.0.1:1", TokenFile: dir + "/none"}}, "--vault-token-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.cfg)
			wantKind(t, err, ErrUsage, tt.want)
		})
	}
}
