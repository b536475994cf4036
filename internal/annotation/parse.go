package annotation

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/oneline"
)

// ErrInvalid is matched (errors.Is) by every error Parse returns.
var ErrInvalid = errors.New("invalid credlet.io annotations")

// FieldError is one bad annotation: the key as written, its value, what is
// wrong and what is allowed.
type FieldError struct {
	Key     string
	Value   string
	Problem string
	Allowed string

	unknown bool // the key itself is not in the schema
}

func (e *FieldError) Error() string {
	var b strings.Builder
	key := oneline.Clip(e.Key, 80)
	if strings.IndexFunc(key, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		key = strconv.Quote(key) // no raw control characters in kubectl's output
	}
	b.WriteString("annotation " + key)
	if e.Value != "" {
		b.WriteString(fmt.Sprintf("=%q", oneline.Clip(e.Value, 80)))
	}
	if e.Problem != "" {
		b.WriteString(": " + e.Problem)
	}
	if e.Allowed != "" {
		b.WriteString(" (allowed: " + strings.ReplaceAll(e.Allowed, "`", "") + ")")
	}
	return b.String()
}

// Error lists every problem in one pod's annotations, sorted by key.
type Error struct {
	Problems []*FieldError
}

// Limits that keep a denial readable in kubectl's output however many
// annotations are wrong.
const (
	maxListed       = 10
	maxMessageBytes = 4096
)

// Error names the first problems, says how many more there are, and lists
// the known keys once when a key was unknown; at most 4 KiB.
func (e *Error) Error() string {
	var b strings.Builder
	unknown := false
	for i, p := range e.Problems {
		unknown = unknown || p.unknown
		if i < maxListed {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p.Error())
		}
	}
	if n := len(e.Problems) - maxListed; n > 0 {
		fmt.Fprintf(&b, "; and %d more", n)
	}
	if unknown {
		b.WriteString(". Known keys under " + Prefix + ": " + strings.Join(knownKeys(), ", "))
	}
	msg := b.String()
	if len(msg) > maxMessageBytes {
		msg = strings.ToValidUTF8(msg[:maxMessageBytes-3], "") + "..."
	}
	return msg
}

func knownKeys() []string {
	known := make([]string, 0, len(schema))
	for _, f := range schema {
		if f.Key != KeyStatus {
			known = append(known, strings.TrimPrefix(f.Key, Prefix))
		}
	}
	return known
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// credInput collects one credential set's annotations until it is built.
type credInput struct {
	path    string
	hasPath bool
	opts    []string
	keys    []string // annotation keys seen, for attributing errors
}

// state is what the parsers write into while Parse walks the annotations.
type state struct {
	spec  Spec
	creds map[string]*credInput
}

func (p *state) cred(name string) *credInput {
	c := p.creds[name]
	if c == nil {
		c = &credInput{}
		p.creds[name] = c
	}
	return c
}

// Parse validates every credlet.io/* annotation and returns the typed Spec.
// Annotations outside credlet.io/ are ignored. The error, an *Error, names
// every unknown key and bad value with what is allowed.
func Parse(annotations map[string]string) (Spec, error) {
	p := &state{creds: map[string]*credInput{}}
	seen, problems := p.parseKeys(annotations)
	problems = append(problems, p.applyDefaults(seen)...)
	problems = append(problems, p.buildCredentials()...)
	if len(p.spec.Credentials) == 0 && len(problems) == 0 {
		problems = append(problems, &FieldError{Key: schema[0].Key, Problem: "no credential set: add at least one"})
	}
	problems = append(problems, crossCheck(&p.spec, seen)...)
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b *FieldError) int { return strings.Compare(a.Key, b.Key) })
		// A typo suggestion costs an edit distance per known key: only
		// for the problems a denial lists, so thousands of unknown keys
		// cost no more than ten.
		for i, f := range problems {
			if f.unknown {
				if i < maxListed {
					f.Problem = unknownKey(f.Key)
				} else {
					f.Problem = "unknown annotation"
				}
			}
		}
		return Spec{}, &Error{Problems: problems}
	}
	return p.spec, nil
}

// parseKeys parses every credlet.io/ annotation with its schema row. It
// returns the pod-level schema keys present and the problems found.
func (p *state) parseKeys(annotations map[string]string) (map[string]bool, []*FieldError) {
	var problems []*FieldError
	seen := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(annotations)) {
		if !strings.HasPrefix(key, Prefix) {
			continue
		}
		value := annotations[key]
		f, name, err := lookup(key)
		if err != nil {
			problems = append(problems, &FieldError{Key: key, Problem: err.Error()})
			continue
		}
		if f == nil {
			problems = append(problems, &FieldError{Key: key, unknown: true}) // Problem: below
			continue
		}
		seen[f.Key] = true
		if name != "" {
			p.cred(name).keys = append(p.cred(name).keys, key)
		}
		if err := f.parse(p, name, value); err != nil {
			problems = append(problems, &FieldError{Key: key, Value: value, Problem: problemText(err), Allowed: f.Allowed})
		}
	}
	return seen, problems
}

// applyDefaults parses each absent key's default. Defaults are valid
// (TestDefaultsParse); one that is not is reported, not dropped.
func (p *state) applyDefaults(seen map[string]bool) []*FieldError {
	var problems []*FieldError
	apply := func(f Field, key, name string) {
		if err := f.parse(p, name, f.Default); err != nil {
			problems = append(problems, &FieldError{Key: key, Value: f.Default, Problem: "the injector's default does not parse: " + problemText(err)})
		}
	}
	for _, f := range schema {
		if f.Default == "" {
			continue
		}
		if strings.Contains(f.Key, "<name>") {
			for _, name := range slices.Sorted(maps.Keys(p.creds)) {
				if key := credKey(f.Key, name); !slices.Contains(p.creds[name].keys, key) {
					apply(f, key, name)
				}
			}
			continue
		}
		if !seen[f.Key] {
			apply(f, f.Key, "")
		}
	}
	return problems
}

// buildCredentials turns each set's collected path and options into a
// credspec.Credential, the one spec the agent parses too.
func (p *state) buildCredentials() []*FieldError {
	var problems []*FieldError
	bad := func(key, value, problem string) {
		problems = append(problems, &FieldError{Key: key, Value: value, Problem: problem})
	}
	for _, name := range slices.Sorted(maps.Keys(p.creds)) {
		c := p.creds[name]
		pathKey := credKey(schema[0].Key, name)
		if !c.hasPath {
			if !slices.Contains(c.keys, pathKey) { // a bad path was already reported
				bad(c.keys[0], "", "given without "+pathKey)
			}
			continue
		}
		if hasOpt(c.opts, "context") && !hasOpt(c.opts, "transit") {
			bad(credKey(Prefix+"credential.<name>.context", name), "", "needs "+credKey(Prefix+"credential.<name>.transit-key", name))
			continue
		}
		cred, err := credspec.Build(name, c.path, c.opts...)
		if err != nil {
			bad(pathKey, c.path, problemText(credspecProblem(err)))
			continue
		}
		p.spec.Credentials = append(p.spec.Credentials, cred)
	}
	return problems
}

// crossCheck enforces what one key demands of another.
func crossCheck(s *Spec, seen map[string]bool) []*FieldError {
	var out []*FieldError
	add := func(key, problem string) { out = append(out, &FieldError{Key: key, Problem: problem}) }
	role, secret, auth := Prefix+"role", Prefix+"approle-secret", Prefix+"auth"
	switch s.Auth {
	case AuthKubernetes, AuthJWT:
		if !seen[role] {
			what := "kubernetes (the default)"
			if s.Auth == AuthJWT {
				what = "jwt"
			}
			add(role, "required when "+auth+" is "+what)
		}
		if seen[secret] {
			add(secret, "only used when "+auth+" is approle")
		}
	case AuthAppRole:
		if !seen[secret] {
			add(secret, "required when "+auth+" is approle")
		}
		if seen[role] {
			add(role, "only used when "+auth+" is kubernetes or jwt")
		}
	}
	return out
}

// lookup finds the schema row for key; name is the credential set's name
// for per-credential keys.
func lookup(key string) (f *Field, name string, err error) {
	rest, ok := strings.CutPrefix(key, CredentialPrefix)
	if !ok {
		return byKey[key], "", nil
	}
	name, opt, hasOpt := strings.Cut(rest, ".")
	if err := credspec.ValidateName(name); err != nil {
		return nil, "", credspecProblem(err)
	}
	pattern := CredentialPrefix + "<name>"
	if hasOpt {
		pattern += "." + opt
	}
	return byKey[pattern], name, nil
}

func hasOpt(opts []string, name string) bool {
	return slices.ContainsFunc(opts, func(o string) bool { return strings.HasPrefix(o, name+"=") })
}

func credKey(pattern, name string) string { return strings.Replace(pattern, "<name>", name, 1) }

func problemText(err error) string {
	if errors.Is(err, errBad) {
		return "" // Allowed says it all
	}
	return err.Error()
}

// unknownKey explains an unknown credlet.io key, suggesting the nearest
// known one when the key looks like a typo.
func unknownKey(key string) string {
	if key == InjectLabel {
		return "unknown annotation: " + InjectLabel + " is a label (metadata.labels), not an annotation"
	}
	candidates := Keys()
	if rest, ok := strings.CutPrefix(key, CredentialPrefix); ok {
		name, _, _ := strings.Cut(rest, ".")
		for i, c := range candidates {
			candidates[i] = credKey(c, name)
		}
	}
	best, bestD := "", 4
	for _, c := range candidates {
		if d := distance(key, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown annotation (did you mean %s?)", best)
	}
	return "unknown annotation"
}

// distance is the Levenshtein distance, for typo suggestions.
func distance(a, b string) int {
	if len(a) > 128 || len(b) > 128 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// clip keeps a hostile value from flooding a denial.
