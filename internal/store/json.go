package store

import (
	"io"
	"unicode/utf8"
)

// JSON encoding straight from locked memory. encoding/json would need the
// values as Go strings (copies the collector may keep around for a while);
// these functions stream each value's bytes from its view into w, so the only
// plaintext copies are the ones w itself makes (a connection's write buffer,
// a file's pages).

// FieldsJSONLen is the exact number of bytes WriteFieldsJSON writes.
func (s *Set) FieldsJSONLen() int {
	n := 2 // {}
	b := s.buf.Bytes()
	for i, k := range s.keys {
		n += len(k) + JSONStringLen(b[s.offs[i]:s.offs[i+1]])
	}
	if len(s.names) > 1 {
		n += len(s.names) - 1 // commas
	}
	return n
}

// WriteFieldsJSON writes the fields as one JSON object, {"name":"value",...},
// in name order.
func (s *Set) WriteFieldsJSON(w io.Writer) error {
	if _, err := io.WriteString(w, "{"); err != nil {
		return err
	}
	var err error
	b := s.buf.Bytes()
	for i, k := range s.keys {
		if i > 0 {
			if _, err = io.WriteString(w, ","); err != nil {
				return err
			}
		}
		if _, err = io.WriteString(w, k); err != nil {
			return err
		}
		if err = WriteJSONString(w, b[s.offs[i]:s.offs[i+1]:s.offs[i+1]]); err != nil {
			return err
		}
	}
	_, err = io.WriteString(w, "}")
	return err
}

const hexDigits = "0123456789abcdef"

// jsonSafe[c] is true for ASCII bytes written as they are inside a JSON
// string.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// escapes[c] is the escape sequence of an ASCII byte that is not safe, in
// the form encoding/json uses.
var escapes = func() (t [utf8.RuneSelf]string) {
	for c := range utf8.RuneSelf {
		switch c {
		case '"', '\\':
			t[c] = `\` + string(rune(c))
		case '\n':
			t[c] = `\n`
		case '\r':
			t[c] = `\r`
		case '\t':
			t[c] = `\t`
		case '\b':
			t[c] = `\b`
		case '\f':
			t[c] = `\f`
		default:
			t[c] = `\u00` + string(hexDigits[c>>4]) + string(hexDigits[c&0xf])
		}
	}
	return t
}()

// JSONStringLen is the exact number of bytes WriteJSONString writes for p.
func JSONStringLen(p []byte) int {
	n := 2
	for i := 0; i < len(p); {
		if c := p[i]; c < utf8.RuneSelf {
			switch {
			case jsonSafe[c]:
				n++
			default:
				n += len(escapes[c])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6 // \ufffd
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// WriteJSONString writes p as a JSON string: quotes, backslash escapes for
// '"', '\\' and control characters, \u2028 and \u2029 escaped, and each byte
// of invalid UTF-8 replaced by \ufffd (as encoding/json does). Runs of bytes
// that need no escaping are written straight from p.
func WriteJSONString(w io.Writer, p []byte) error {
	if _, err := io.WriteString(w, `"`); err != nil {
		return err
	}
	start := 0
	flush := func(end int) error {
		if start < end {
			_, err := w.Write(p[start:end:end])
			return err
		}
		return nil
	}
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			if err := flush(i); err != nil {
				return err
			}
			if _, err := io.WriteString(w, escapes[c]); err != nil {
				return err
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		var esc string
		switch {
		case r == utf8.RuneError && size == 1:
			esc = `\ufffd`
		case r == '\u2028':
			esc = `\u2028`
		case r == '\u2029':
			esc = `\u2029`
		default:
			i += size
			continue
		}
		if err := flush(i); err != nil {
			return err
		}
		if _, err := io.WriteString(w, esc); err != nil {
			return err
		}
		i += size
		start = i
	}
	if err := flush(len(p)); err != nil {
		return err
	}
	_, err := io.WriteString(w, `"`)
	return err
}
