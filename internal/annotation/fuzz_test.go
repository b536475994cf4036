package annotation

import (
	"errors"
	"strings"
	"testing"

	"github.com/credlet/credlet/internal/credspec"
)

// FuzzParse feeds annotations as "key=value" lines. Parse must never panic;
// it either denies with an *Error naming credlet.io keys, or returns a Spec
// whose credentials the agent's parser reads back unchanged.
func FuzzParse(f *testing.F) {
	f.Add("credlet.io/role=acme-bot\ncredlet.io/credential.exa=secret/partners/acme/exa")
	f.Add("credlet.io/auth=approle\ncredlet.io/approle-secret=s\ncredlet.io/credential.a=kv/data/x/y\ncredlet.io/credential.a.transit-key=k\ncredlet.io/credential.a.context=c=1")
	f.Add("credlet.io/rol=x\ncredlet.io/credential.A.format=yaml\ncredlet.io/uid=0")
	f.Fuzz(func(t *testing.T, in string) {
		m := map[string]string{}
		for line := range strings.SplitSeq(in, "\n") {
			k, v, _ := strings.Cut(line, "=")
			m[k] = v
		}
		spec, err := Parse(m)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error %v is not a non-empty *Error", err)
			}
			for _, p := range e.Problems {
				if !strings.HasPrefix(p.Key, Prefix) {
					t.Fatalf("problem names %q, outside %s", p.Key, Prefix)
				}
			}
			return
		}
		if len(spec.Credentials) == 0 {
			t.Fatal("accepted a pod without credentials")
		}
		if spec.Auth == AuthKubernetes && spec.Role == "" {
			t.Fatal("kubernetes auth without a role")
		}
		for _, c := range spec.Credentials {
			back, err := credspec.Parse(c.String())
			if err != nil {
				t.Fatalf("agent cannot parse rendered %q: %v", c.String(), err)
			}
			if back.String() != c.String() {
				t.Fatalf("round trip changed %q to %q", c.String(), back.String())
			}
		}
	})
}
