package credspec

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    Credential
		wantErr string
	}{
		{
			name: "plain",
			spec: "zerodha=secret/partners/acme/zerodha",
			want: Credential{Name: "zerodha", Mount: "secret", Path: "partners/acme/zerodha", Format: FormatFiles},
		},
		{
			name: "data segment stripped",
			spec: "zerodha=secret/data/partners/acme/zerodha",
			want: Credential{Name: "zerodha", Mount: "secret", Path: "partners/acme/zerodha", Format: FormatFiles},
		},
		{
			name: "optional=false",
			spec: "a=secret/x;optional=false",
			want: Credential{Name: "a", Mount: "secret", Path: "x", Format: FormatFiles},
		},
		{
			name: "every option",
			spec: "binance=kv/partners/acme/binance;transit=partner-keys;context=acme;fields=api_key,api_secret;format=env;optional",
			want: Credential{Name: "binance", Mount: "kv", Path: "partners/acme/binance", TransitKey: "partner-keys",
				Context: "acme", Fields: []string{"api_key", "api_secret"}, Format: FormatEnv, Optional: true},
		},
		{name: "no equals", spec: "secret/a/b", wantErr: "want NAME=KV_PATH"},
		{name: "upper-case name", spec: "Zerodha=secret/a", wantErr: "name \"Zerodha\""},
		{name: "name with slash", spec: "a/b=secret/a", wantErr: "name \"a/b\""},
		{name: "path traversal", spec: "a=secret/../sys/x", wantErr: "KV path"},
		{name: "empty segment", spec: "a=secret//x", wantErr: "KV path"},
		{name: "mount only", spec: "a=secret", wantErr: "want MOUNT/PATH"},
		{name: "unknown option", spec: "a=secret/x;transit_key=k", wantErr: `unknown option "transit_key" (allowed: transit, context, fields, format, optional)`},
		{name: "bad format", spec: "a=secret/x;format=yaml", wantErr: "allowed files, json, env"},
		{name: "context without transit", spec: "a=secret/x;context=acme", wantErr: "context needs transit=KEY"},
		{name: "duplicate option", spec: "a=secret/x;format=env;format=json", wantErr: "given twice"},
		{name: "field traversal", spec: "a=secret/x;fields=../etc", wantErr: "field \"../etc\""},
		{name: "duplicate field", spec: "a=secret/x;fields=k,k", wantErr: "listed twice"},
		{name: "optional with a bad value", spec: "a=secret/x;optional=no", wantErr: "allowed no value, true or false"},
		{name: "options count toward the size cap", spec: "a=secret/x;format=env;fields=" + strings.Repeat("f", 5000), wantErr: "longer than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want it to contain %q", tt.spec, err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v does not wrap ErrInvalid", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
			again, err := Parse(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip of %q via %q = %+v, %v", tt.spec, got.String(), again, err)
			}
		})
	}
}

func TestHostileInputErrorsStayShort(t *testing.T) {
	_, err := Parse("a=secret/x;transit=" + strings.Repeat("k", 5000))
	if err == nil || len(err.Error()) > 400 {
		t.Fatalf("error for a huge value should be short, got %d bytes: %v", len(err.Error()), err)
	}
}

func ExampleParse() {
	c, err := Parse("zerodha=secret/data/partners/acme/zerodha;transit=partners;context=acme;fields=api_key,api_secret")
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Mount, c.Path)
	// c.String() is the canonical form the injector hands to the agent.
	fmt.Println(c.String())
	// Output:
	// secret partners/acme/zerodha
	// zerodha=secret/partners/acme/zerodha;transit=partners;context=acme;fields=api_key,api_secret
}

// FuzzParse: Parse never panics, and whatever it accepts renders to a spec
// that parses back to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"zerodha=secret/partners/acme/zerodha",
		"b=kv/data/x/y;transit=k;context=c;fields=a,b;format=json;optional",
		"a=secret/../x", "=", ";;;", "a=b/c;format=env;format=env",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := Parse(spec)
		if err != nil {
			return
		}
		again, err := Parse(c.String())
		if err != nil {
			t.Fatalf("canonical %q of accepted %q does not parse: %v", c.String(), spec, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip differs: %+v vs %+v", again, c)
		}
	})
}

// TestValidNameMatchesItsGrammar checks the hand-written name check against
// the grammar it implements, written as a regexp, on edge cases and on
// random strings over an alphabet that hits every branch.
func TestValidNameMatchesItsGrammar(t *testing.T) {
	grammar := regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`)
	cases := []string{"", "a", "0", "-", "_", "a-", "-a", "a_b", "a--b", "A", "aB", "a.b", "a/b", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a" + strings.Repeat("-", 61) + "b", "a\x00"}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "az09-_A./\x00é"
	for range 20000 {
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, name := range cases {
		want := grammar.MatchString(name)
		if got := ValidateName(name) == nil; got != want {
			t.Fatalf("ValidateName(%q) accepts=%v, the grammar says %v", name, got, want)
		}
	}
}

func TestCheckVaultAddr(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr string
	}{
		{addr: "https://vault.vault.svc:8200"},
		{addr: "http://127.0.0.1:8200"},
		{addr: "https://vault.example.test"},
		{addr: "vault:8200", wantErr: "scheme must be http or https"},
		{addr: "ftp://vault", wantErr: "scheme must be http or https"},
		{addr: "https://", wantErr: "no host"},
		{addr: "https://FAKE-user:FAKE-pass@vault", wantErr: "user info"},
		{addr: "https://vault#x", wantErr: "fragment"},
		{addr: "https://vault?token=FAKE", wantErr: "query"},
		{addr: "https://vault/a b", wantErr: "whitespace"},
		{addr: "", wantErr: "scheme"},
	}
	for _, tt := range tests {
		err := CheckVaultAddr(tt.addr)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("CheckVaultAddr(%q) = %v", tt.addr, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrVaultAddr) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CheckVaultAddr(%q) = %v, want ErrVaultAddr with %q", tt.addr, err, tt.wantErr)
		}
	}
}

// TestTokenMatchesRegexp checks the hand-written token checks against the
// regexps they replace, on edge cases and on random strings over an
// alphabet that hits every branch.
func TestTokenMatchesRegexp(t *testing.T) {
	checks := []struct {
		name    string
		re      *regexp.Regexp
		checkFn func(string) bool
	}{
		{"KV path segment", regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`), segmentOK},
		{"Transit key", regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`), keyOK},
		{"field", regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`), fieldOK},
		{"role (annotation)", regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._@-]{0,127}$`), func(s string) bool { return Token(s, 128, "._@-") }},
		{"auth mount", regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$`), MountOK},
	}
	cases := []string{"", "a", "Z", "0", "_", ".", "-", "@", "a.", "a-", "a_", "a@", ".a", "-a", "@a", "a b", "a/b", "a\n", "é", "aé",
		"a\x00", "/", "a/", "/a", "a//b", "a/b", "a/.b", "a/b.", "a/_", "a/-", "a/b@c", strings.Repeat("a/", 64) + "a", strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a", 300), "a" + strings.Repeat(".", 127), "a" + strings.Repeat("-", 128)}
	rng := rand.New(rand.NewPCG(3, 4))
	// Mostly bytes some check allows, so that many strings are accepted.
	const allowed, other = "azAZ09_.-@", "// \x00é~"
	for range 20000 {
		b := make([]byte, rng.IntN(140))
		if rng.IntN(4) == 0 {
			b = make([]byte, rng.IntN(6))
		}
		for i := range b {
			if rng.IntN(200) == 0 {
				b[i] = other[rng.IntN(len(other))]
			} else {
				b[i] = allowed[rng.IntN(len(allowed))]
			}
		}
		cases = append(cases, string(b))
	}
	for _, c := range checks {
		accepted := 0
		for _, s := range cases {
			got, want := c.checkFn(s), c.re.MatchString(s)
			if got != want {
				t.Fatalf("%s %q: accepted=%v, the regexp says %v", c.name, s, got, want)
			}
			if got {
				accepted++
			}
		}
		if accepted < len(cases)/10 || accepted > len(cases)*9/10 {
			t.Errorf("%s: %d of %d cases accepted: the cases do not exercise both answers", c.name, accepted, len(cases))
		}
	}
}

func TestRotatedAt(t *testing.T) {
	created := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	rotated := "2026-11-02T09:30:00.5Z"
	want := time.Date(2026, 11, 2, 9, 30, 0, 5e8, time.UTC)
	for _, tt := range []struct {
		name   string
		custom map[string]string
		want   time.Time
	}{
		{"no metadata", nil, created},
		{"this version rewrapped", map[string]string{MetaRewrappedVersion: "7", MetaRotatedAt: rotated}, want},
		{"another version rewrapped", map[string]string{MetaRewrappedVersion: "6", MetaRotatedAt: rotated}, created},
		{"marker without a time", map[string]string{MetaRewrappedVersion: "7"}, created},
		{"version not a number", map[string]string{MetaRewrappedVersion: "seven", MetaRotatedAt: rotated}, created},
		{"time not RFC 3339", map[string]string{MetaRewrappedVersion: "7", MetaRotatedAt: "last month"}, created},
		{"time after creation", map[string]string{MetaRewrappedVersion: "7", MetaRotatedAt: "2026-12-24T00:00:00Z"}, created},
	} {
		if got := RotatedAt(tt.custom, 7, created); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
