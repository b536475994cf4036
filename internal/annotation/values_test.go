package annotation

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestRoleAndMountMatchRegexps checks the hand-written role and auth mount
// checks against the regexps they replace, on edge cases and on random
// strings mostly made of allowed bytes.
func TestRoleAndMountMatchRegexps(t *testing.T) {
	checks := []struct {
		name    string
		re      *regexp.Regexp
		checkFn func(string) bool
	}{
		{"role", regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._@-]{0,127}$`), roleOK},
		{"auth mount", regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$`), mountOK},
	}
	cases := []string{"", "a", "/", "a/", "/a", "a//b", "a/b", "a/.b", "a/b.", "a/_", "a/-", "@", "a@", "a/b@c", "é", "a\n",
		strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a/", 64) + "a"}
	rng := rand.New(rand.NewPCG(5, 6))
	const allowed, other = "azAZ09_.-@//", " \x00é~"
	for range 20000 {
		b := make([]byte, rng.IntN(140))
		if rng.IntN(4) == 0 {
			b = make([]byte, rng.IntN(8))
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
		if accepted < 100 {
			t.Errorf("%s: %d of %d cases accepted: the cases do not exercise both answers", c.name, accepted, len(cases))
		}
	}
}
