package kv

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrBadString is a field value that is not valid JSON string syntax.
var ErrBadString = errors.New("malformed JSON string")

// Value turns a JSON value from a KV secret into the bytes delivered:
// a string's unescaped contents, null as empty, anything else (number,
// bool, object, array) as its JSON text. The result is a fresh slice.
func Value(raw []byte) ([]byte, error) {
	switch {
	case len(raw) == 0:
		return nil, ErrBadString
	case raw[0] == '"':
		return unquote(raw)
	case string(raw) == "null":
		return []byte{}, nil
	}
	return append(make([]byte, 0, len(raw)), raw...), nil
}

// unquote decodes a JSON string literal (with its quotes) into a fresh
// slice, without making a Go string of it.
func unquote(raw []byte) ([]byte, error) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, ErrBadString
	}
	s := raw[1 : len(raw)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			if c < 0x20 || c == '"' {
				clear(out)
				return nil, ErrBadString
			}
			if c < utf8.RuneSelf {
				out = append(out, c)
				i++
				continue
			}
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError) // as encoding/json does
			} else {
				out = append(out, s[i:i+size]...)
			}
			i += size
			continue
		}
		if i+1 >= len(s) {
			clear(out)
			return nil, ErrBadString
		}
		switch s[i+1] {
		case '"', '\\', '/':
			out = append(out, s[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s[i+2:])
			if !ok {
				clear(out)
				return nil, ErrBadString
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2, ok = hex4(s[i+2:])
				}
				if d := utf16.DecodeRune(r, r2); ok && d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			clear(out)
			return nil, ErrBadString
		}
		i += 2
	}
	return out, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
