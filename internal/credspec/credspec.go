package credspec

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/credlet/credlet/internal/oneline"
)

// Format is how a credential set is written to the tmpfs.
type Format string

// The formats the file sink writes.
const (
	FormatFiles Format = "files" // one file per field (default)
	FormatJSON  Format = "json"  // credentials.json
	FormatEnv   Format = "env"   // credentials.env, KEY=value lines
)

// Formats lists the allowed formats, for error messages and docs.
var Formats = []Format{FormatFiles, FormatJSON, FormatEnv}

// Credential is one credential set: a KV v2 secret, optionally with
// Transit-encrypted fields, delivered under Name.
type Credential struct {
	Name       string   // delivery name: directory under the secrets dir, socket path element
	Mount      string   // KV v2 mount, e.g. "secret"
	Path       string   // path inside the mount, e.g. "partners/acme/zerodha"
	TransitKey string   // Transit key for fields holding "vault:v…" ciphertext; empty: none
	Context    string   // derived-key context (plain text; base64-encoded on the wire)
	Fields     []string // fields to deliver, each required non-empty; empty: all fields
	Format     Format   // file format
	Optional   bool     // readiness does not wait for this set
}

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid credential spec")

// Problem is a parse error: what was wrong and what is allowed. Its
// message is "<Kind>: <Text>"; a caller that names the input itself (an
// annotation key, a flag) shows Text alone (ProblemOf).
type Problem struct {
	Kind error // ErrInvalid, ErrVaultAddr, ErrNotify, ErrVerifyURL
	Also error // a narrower kind it matches too (ErrNotLoopback), or nil
	Text string
}

func (p *Problem) Error() string { return p.Kind.Error() + ": " + p.Text }

// Is matches Kind and Also.
func (p *Problem) Is(target error) bool {
	return target == p.Kind || (p.Also != nil && target == p.Also)
}

// ProblemOf returns a parse error's text without its kind, or err's
// message when it is not a *Problem.
func ProblemOf(err error) string {
	var p *Problem
	if errors.As(err, &p) {
		return p.Text
	}
	return err.Error()
}

func invalid(format string, args ...any) error {
	return &Problem{Kind: ErrInvalid, Text: fmt.Sprintf(format, args...)}
}

// Token reports whether s is one name token: a letter, digit or '_', then
// letters, digits and the bytes of extra, max bytes at most (max <= 0: no
// limit). It is the regular expression ^[A-Za-z0-9_][A-Za-z0-9<extra>]{0,max-1}$
// written out (TestTokenMatchesRegexp): the injector checks several per
// admission, and the regexps cost a tenth of a new pod's admission.
func Token(s string, max int, extra string) bool {
	if s == "" || (max > 0 && len(s) > max) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			continue
		}
		if i == 0 || strings.IndexByte(extra, c) < 0 {
			return false
		}
	}
	return true
}

// MountOK reports whether s is an auth mount path: tokens joined by '/',
// each a letter, digit or '_' followed by letters, digits, '.', '_', '-'
// (the regexp ^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$,
// written out).
func MountOK(s string) bool {
	for seg := range strings.SplitSeq(s, "/") {
		if !Token(seg, 0, "._-") {
			return false
		}
	}
	return true
}

// The tokens of KV paths, Transit keys and field names.
func segmentOK(s string) bool { return Token(s, 0, "._-") }
func keyOK(s string) bool     { return Token(s, 128, "._-") }
func fieldOK(s string) bool   { return Token(s, 128, "._-") }

// Options lists the keys allowed after the path, for error messages and docs.
var Options = []string{"transit", "context", "fields", "format", "optional"}

const maxSpecLen = 4096

// Parse parses "NAME=KV_PATH[;opt...]".
func Parse(spec string) (Credential, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok {
		return Credential{}, fmt.Errorf("%w %q: want NAME=KV_PATH[;transit=KEY][;context=CTX][;fields=a,b][;format=files|json|env][;optional]", ErrInvalid, oneline.Clip(spec, 80))
	}
	parts := strings.Split(rest, ";")
	c, err := Build(name, parts[0], parts[1:]...)
	if err != nil {
		return Credential{}, fmt.Errorf("%w %q: %s", ErrInvalid, oneline.Clip(spec, 80), ProblemOf(err))
	}
	return c, nil
}

// Build makes a Credential from a name, a KV path and "key=value" options
// (the injector feeds it annotation values this way).
func Build(name, kvPath string, opts ...string) (Credential, error) {
	size := len(name) + len(kvPath)
	for _, o := range opts {
		size += len(o) + 1
	}
	if size > maxSpecLen {
		return Credential{}, invalid("longer than %d bytes", maxSpecLen)
	}
	if err := ValidateName(name); err != nil {
		return Credential{}, err
	}
	c := Credential{Name: name, Format: FormatFiles}
	var err error
	if c.Mount, c.Path, err = SplitKVPath(kvPath); err != nil {
		return Credential{}, err
	}
	seen := map[string]bool{}
	for _, opt := range opts {
		k, v, hasValue := strings.Cut(opt, "=")
		k = strings.TrimSpace(k)
		if seen[k] {
			return Credential{}, invalid("option %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "transit":
			if !keyOK(v) {
				return Credential{}, invalid("transit key %q: allowed letters, digits, '.', '_', '-' (1-128)", oneline.Clip(v, 80))
			}
			c.TransitKey = v
		case "context":
			if v == "" || len(v) > 256 || strings.ContainsAny(v, "\x00\n\r;") {
				return Credential{}, invalid("context must be 1-256 bytes on one line, without ';'")
			}
			c.Context = v
		case "fields":
			for f := range strings.SplitSeq(v, ",") {
				if !fieldOK(f) {
					return Credential{}, invalid("field %q: allowed letters, digits, '.', '_', '-', not starting with '.' (1-128)", oneline.Clip(f, 80))
				}
				if slices.Contains(c.Fields, f) {
					return Credential{}, invalid("field %q listed twice", f)
				}
				c.Fields = append(c.Fields, f)
			}
		case "format":
			if !slices.Contains(Formats, Format(v)) {
				return Credential{}, invalid("format %q: allowed files, json, env", oneline.Clip(v, 80))
			}
			c.Format = Format(v)
		case "optional":
			switch {
			case !hasValue || v == "true":
				c.Optional = true
			case v == "false":
				c.Optional = false
			default:
				return Credential{}, invalid("optional %q: allowed no value, true or false", oneline.Clip(v, 80))
			}
		default:
			return Credential{}, invalid("unknown option %q (allowed: %s)", oneline.Clip(k, 80), strings.Join(Options, ", "))
		}
	}
	if c.Context != "" && c.TransitKey == "" {
		return Credential{}, invalid("context needs transit=KEY")
	}
	return c, nil
}

// ValidateName checks a credential set's delivery name: it becomes a
// directory name and a URL path element.
func ValidateName(name string) error {
	if !validName(name) {
		return invalid("name %q: allowed lower-case letters, digits, '-', '_', 1-63, starting and ending with a letter or digit", oneline.Clip(name, 80))
	}
	return nil
}

// validName: lower-case letters, digits, '-', '_', 1-63 characters,
// starting and ending with a letter or digit. (Hand-written: the socket
// checks it on every read, and a regexp costs as much as the rest of the
// request's parsing.)
func validName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '_') || i == 0 || i == len(name)-1) {
			return false
		}
	}
	return true
}

// SplitKVPath splits "MOUNT/PATH" or "MOUNT/data/PATH" into the KV v2 mount
// and the path inside it. Segments may not be empty, "." or "..".
func SplitKVPath(p string) (mount, path string, err error) {
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if !segmentOK(s) {
			return "", "", invalid("KV path %q: want MOUNT/PATH with segments of letters, digits, '.', '_', '-' (no empty, '.' or '..' segment)", oneline.Clip(p, 80))
		}
	}
	if len(segs) >= 3 && segs[1] == "data" {
		segs = append(segs[:1], segs[2:]...)
	}
	if len(segs) < 2 {
		return "", "", invalid("KV path %q: want MOUNT/PATH, e.g. secret/partners/acme/zerodha", oneline.Clip(p, 80))
	}
	return segs[0], strings.Join(segs[1:], "/"), nil
}

// KVPath is the path as a user writes it: MOUNT/PATH.
func (c Credential) KVPath() string { return c.Mount + "/" + c.Path }

// String renders the canonical spec; Parse(c.String()) == c.
func (c Credential) String() string {
	var b strings.Builder
	b.WriteString(c.Name + "=" + c.KVPath())
	if c.TransitKey != "" {
		b.WriteString(";transit=" + c.TransitKey)
	}
	if c.Context != "" {
		b.WriteString(";context=" + c.Context)
	}
	if len(c.Fields) > 0 {
		b.WriteString(";fields=" + strings.Join(c.Fields, ","))
	}
	if c.Format != "" && c.Format != FormatFiles {
		b.WriteString(";format=" + string(c.Format))
	}
	if c.Optional {
		b.WriteString(";optional")
	}
	return b.String()
}

// clip keeps error messages one readable line for hostile input.
