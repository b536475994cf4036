package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
	"unicode/utf8"
)

// tsLayout is the timestamp format of the "ts" field: UTC, RFC 3339 with
// exactly nine fractional digits, so every line's timestamp has one width.
const tsLayout = "2006-01-02T15:04:05.000000000Z"

// maxDetail caps the detail field (bytes); a longer detail is cut at a rune
// boundary and ends in "...".
const maxDetail = 1024

// line is one audit record as written. Field order here is the order on the
// line; see doc.go for the canonical bytes.
type line struct {
	TS         time.Time
	Seq        uint64
	Event      Event
	Credential string
	Version    int
	Peer       *Peer
	Result     string
	Count      uint64
	Detail     string
	Prev       string
	Hash       string
}

// appendCanonical appends the record's canonical bytes: the JSON object with
// every field but "hash", in fixed order, optional fields omitted when zero.
func appendCanonical(b []byte, l *line) []byte {
	b = append(b, `{"ts":"`...)
	b = l.TS.UTC().AppendFormat(b, tsLayout)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, l.Seq, 10)
	b = append(b, `,"event":`...)
	b = appendString(b, string(l.Event))
	if l.Credential != "" {
		b = append(b, `,"credential":`...)
		b = appendString(b, l.Credential)
	}
	if l.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, int64(l.Version), 10)
	}
	if l.Peer != nil {
		b = append(b, `,"peer":{"uid":`...)
		b = strconv.AppendUint(b, uint64(l.Peer.UID), 10)
		b = append(b, `,"gid":`...)
		b = strconv.AppendUint(b, uint64(l.Peer.GID), 10)
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(l.Peer.PID), 10)
		b = append(b, '}')
	}
	b = append(b, `,"result":`...)
	b = appendString(b, l.Result)
	if l.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, l.Count, 10)
	}
	if l.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendString(b, l.Detail)
	}
	b = append(b, `,"prev":`...)
	b = appendString(b, l.Prev)
	return append(b, '}')
}

// appendLine appends the full line for l: its canonical bytes with
// `,"hash":"<hex>"` inserted before the closing brace, and a newline. It sets
// l.Hash.
func appendLine(b []byte, l *line) []byte {
	start := len(b)
	b = appendCanonical(b, l)
	sum := sha256.Sum256(b[start:])
	l.Hash = hex.EncodeToString(sum[:])
	b = b[:len(b)-1] // drop '}'
	b = append(b, `,"hash":"`...)
	b = append(b, l.Hash...)
	return append(b, "\"}\n"...)
}

// appendString appends s as a JSON string, escaped the way `jq -c` prints
// strings: `"` and `\` escaped, \b \f \n \r \t by name, other bytes below
// 0x20 and 0x7f as \u00xx (lower-case hex), everything else as raw UTF-8.
// Invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hexdig = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexdig[c>>4], hexdig[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// clip shortens s to at most n bytes at a rune boundary, marking the cut.
