package creds

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/securemem"
)

// maxValue bounds a value read from a file or stdin.
const maxValue = 1 << 20

// ParseAssignments turns FIELD=@FILE, FIELD=- and FIELD=VALUE arguments
// into field values. @FILE and stdin lose one trailing newline. A value on
// the command line works but writes a warning to warn: it stays in shell
// history and shows in ps. On error every value read so far is wiped.
func ParseAssignments(args []string, stdin io.Reader, warn io.Writer) (map[string][]byte, error) {
	out := map[string][]byte{}
	fail := func(err error) (map[string][]byte, error) {
		securemem.WipeFields(out)
		return nil, err
	}
	usedStdin := false
	for i, a := range args {
		field, spec, ok := strings.Cut(a, "=")
		if !ok || field == "" {
			// The argument itself is not echoed: it may be a value.
			return fail(usage(fmt.Sprintf("field argument %d is not FIELD=@FILE, FIELD=- (stdin) or FIELD=VALUE", i+1)))
		}
		if err := filesource.ValidateField(field); err != nil {
			return fail(usage(err.Error()))
		}
		if _, dup := out[field]; dup {
			return fail(usage(fmt.Sprintf("field %q given twice", field)))
		}
		var v []byte
		var err error
		switch {
		case spec == "-":
			if usedStdin {
				return fail(usage(fmt.Sprintf("field %q: only one field can read stdin (-); use FIELD=@FILE for the others", field)))
			}
			usedStdin = true
			if stdin == nil {
				return fail(usage(fmt.Sprintf("field %q: no stdin", field)))
			}
			v, err = readBounded(stdin, "stdin")
		case strings.HasPrefix(spec, "@"):
			v, err = readFileValue(spec[1:])
		case spec == "":
			return fail(usage(fmt.Sprintf("field %q: empty value (want FIELD=@FILE, FIELD=- or FIELD=VALUE)", field)))
		default:
			fmt.Fprintf(warn, "credlet-agent: warning: the value of %s was given on the command line; it stays in shell history and shows in ps (prefer %s=@FILE or %s=-)\n", field, field, field)
			v = []byte(spec)
		}
		if err != nil {
			return fail(usage(fmt.Sprintf("field %q: %v", field, err)))
		}
		if len(v) == 0 {
			return fail(usage(fmt.Sprintf("field %q: the value is empty", field)))
		}
		out[field] = v
	}
	if len(out) == 0 {
		return nil, usage("no fields given: want FIELD=@FILE, FIELD=- (stdin) or FIELD=VALUE")
	}
	return out, nil
}

func readFileValue(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("@ needs a file name")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f, path)
}

func readBounded(r io.Reader, what string) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, maxValue+1))
	raw := buf.Bytes()
	if err != nil {
		securemem.Wipe(raw)
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if n > maxValue {
		securemem.Wipe(raw)
		return nil, fmt.Errorf("%s: longer than %d bytes", what, maxValue)
	}
	v := raw[:n]
	if len(v) > 0 && v[len(v)-1] == '\n' {
		v = v[:len(v)-1]
		if len(v) > 0 && v[len(v)-1] == '\r' {
			v = v[:len(v)-1]
		}
	}
	out := slices.Clone(v)
	securemem.Wipe(raw[:cap(raw)])
	return out, nil
}
