package file

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/oneline"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/store"
)

// Fixed names inside a version directory.
const (
	versionFile = "VERSION"
	jsonFile    = "credentials.json"
	envFile     = "credentials.env"
)

// maxQuoted bounds the field name an error message quotes.
const maxQuoted = 64

// ErrFieldName is wrapped when a field cannot be delivered under its name.
var ErrFieldName = errors.New("field cannot be delivered under its name")

var fileNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$`)

// checkFileName reports whether a field can be a file of its own.
func checkFileName(field string) error {
	if !fileNameRE.MatchString(field) || field == versionFile {
		return fmt.Errorf("%w: %q: format=files allows letters, digits, '.', '_', '-', not starting with '.', 1-255, and not %s; use format=json or format=env",
			ErrFieldName, oneline.Clip(field, maxQuoted), versionFile)
	}
	return nil
}

// content is one file of a version.
type content struct {
	name string
	data []byte // a view into the store, or into buf
	buf  *securemem.Buffer
	link bool // a top-level symlink name -> ..data/name
	lock bool // holds values: kept mapped and locked while current
}

func freeAll(cs []content) {
	for _, c := range cs {
		c.buf.Free() // wipes
	}
}

// contents lays out a version's files. Views stay valid while set is held;
// the caller frees the result.
func contents(c credspec.Credential, set *store.Set) ([]content, error) {
	var out []content
	var err error
	switch c.Format {
	case credspec.FormatJSON:
		var b *securemem.Buffer
		if b, err = encodeJSON(set); err == nil {
			out = append(out, content{name: jsonFile, data: b.Bytes(), buf: b, link: true, lock: true})
		}
	case credspec.FormatEnv:
		var b *securemem.Buffer
		var data []byte
		if b, data, err = encodeEnv(set); err == nil {
			out = append(out, content{name: envFile, data: data, buf: b, link: true, lock: true})
		}
	default:
		set.Each(func(name string, value []byte) {
			if err != nil {
				return
			}
			if err = checkFileName(name); err == nil {
				out = append(out, content{name: name, data: value, link: true, lock: true})
			}
		})
	}
	if err != nil {
		freeAll(out)
		return nil, err
	}
	out = append(out, content{name: versionFile, data: []byte(strconv.Itoa(set.Version()) + "\n")})
	return out, nil
}

// encodeJSON writes {"field":"value",...}\n into locked memory.
func encodeJSON(set *store.Set) (*securemem.Buffer, error) {
	n := set.FieldsJSONLen() + 1
	b, err := securemem.New(n)
	if err != nil {
		return nil, err
	}
	w := b.Writer(n)
	_ = set.WriteFieldsJSON(w)
	_, _ = w.WriteString("\n")
	if w.Err() != nil || len(w.Bytes()) != n {
		b.Free()
		return nil, fmt.Errorf("json encoding is not the %d bytes computed: %v", n, w.Err())
	}
	return b, nil
}

// EnvKey turns a field name into an environment variable name: upper case,
// anything outside [A-Z0-9_] as '_', and '_' before a leading digit.
func EnvKey(field string) string {
	var b strings.Builder
	for i, r := range strings.ToUpper(field) {
		if i == 0 && r >= '0' && r <= '9' {
			b.WriteByte('_')
		}
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// quotedLen is the length of value single-quoted for a POSIX shell.
func quotedLen(v []byte) int { return 2 + len(v) + 3*bytes.Count(v, []byte{'\''}) }

// encodeEnv writes KEY='value' lines into locked memory; data is the
// encoding (empty for a set without fields).
func encodeEnv(set *store.Set) (buf *securemem.Buffer, data []byte, err error) {
	keys := make([]string, 0, set.Len())
	seen := map[string]string{}
	n := 0
	set.Each(func(name string, value []byte) {
		if err != nil {
			return
		}
		k := EnvKey(name)
		if other, dup := seen[k]; dup {
			err = fmt.Errorf("%w: fields %q and %q both become %s in format=env", ErrFieldName, oneline.Clip(other, maxQuoted), oneline.Clip(name, maxQuoted), k)
			return
		}
		if bytes.IndexByte(value, 0) >= 0 {
			err = fmt.Errorf("field %q holds a NUL byte, which an environment variable cannot; use format=files or json", oneline.Clip(name, maxQuoted))
			return
		}
		seen[k] = name
		keys = append(keys, k)
		n += len(k) + 1 + quotedLen(value) + 1
	})
	if err != nil {
		return nil, nil, err
	}
	b, err := securemem.New(max(n, 1))
	if err != nil {
		return nil, nil, err
	}
	w := b.Writer(n)
	i := 0
	set.Each(func(_ string, value []byte) {
		_, _ = w.WriteString(keys[i])
		_, _ = w.WriteString("='")
		for {
			j := bytes.IndexByte(value, '\'')
			if j < 0 {
				_, _ = w.Write(value)
				break
			}
			_, _ = w.Write(value[:j])
			_, _ = w.WriteString(`'\''`)
			value = value[j+1:]
		}
		_, _ = w.WriteString("'\n")
		i++
	})
	if w.Err() != nil || len(w.Bytes()) != n {
		b.Free()
		return nil, nil, fmt.Errorf("env encoding is not the %d bytes computed: %v", n, w.Err())
	}
	return b, w.Bytes(), nil
}
