package audit

import (
	"bytes"
	"errors"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzVerify feeds Verify arbitrary files. It must not panic, must name a
// line within the input, and a file it accepts must be a chain of exactly
// as many canonical lines.
func FuzzVerify(f *testing.F) {
	f.Add(join(chain(f, 3)))
	f.Add([]byte("{}\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Verify(bytes.NewReader(data))
		lines := bytes.Count(data, []byte("\n"))
		var ce *ChainError
		switch {
		case err == nil:
			if n != lines || (len(data) > 0 && data[len(data)-1] != '\n') {
				t.Fatalf("accepted %d records of %d lines", n, lines)
			}
			// Every accepted line re-encodes to itself.
			for _, ln := range bytes.SplitAfter(data, []byte("\n")) {
				if len(ln) == 0 {
					continue
				}
				l, cerr := parseLine(ln[:len(ln)-1])
				if cerr != nil {
					t.Fatalf("accepted line does not parse: %v", cerr)
				}
				if re := appendLine(nil, l); !bytes.Equal(re, ln) {
					t.Fatalf("accepted line %q re-encodes as %q", ln, re)
				}
			}
		case errors.As(err, &ce):
			if ce.Line < 1 || ce.Line > lines+1 || n != ce.Line-1 || ce.Err == nil {
				t.Fatalf("bad ChainError %+v with count %d for %d lines", ce, n, lines)
			}
		default:
			t.Fatalf("Verify of in-memory data returned a non-chain error: %v", err)
		}
	})
}

// FuzzRecordRoundTrip encodes records with arbitrary strings and checks
// that each verifies and parses back to the same values.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("zerodha", "transit: \"bad\"\n\x00\x7f \u2028 é", "ok", 3, uint32(1000), int32(42), uint64(0))
	f.Add("", "", "", 0, uint32(0), int32(-1), uint64(18446744073709551615))
	f.Add("\xff\xfe", "\\u0000", "<&>", -5, uint32(4294967295), int32(2147483647), uint64(9))
	f.Fuzz(func(t *testing.T, cred, detail, result string, version int, uid uint32, pid int32, count uint64) {
		l := &line{
			TS: time.Unix(1_700_000_000, 123).UTC(), Seq: 1, Event: Read, Credential: cred, Version: version,
			Peer: &Peer{UID: uid, GID: uid, PID: pid}, Result: result, Count: count, Detail: detail,
		}
		b := appendLine(nil, l)
		if n, err := Verify(bytes.NewReader(b)); err != nil || n != 1 {
			t.Fatalf("Verify(%q) = %d, %v", b, n, err)
		}
		back, cerr := parseLine(b[:len(b)-1])
		if cerr != nil {
			t.Fatal(cerr)
		}
		if bytes.IndexByte(b[:len(b)-1], '\n') >= 0 {
			t.Fatalf("encoded record spans lines: %q", b)
		}
		if back.Version != version || back.Count != count || *back.Peer != *l.Peer || back.Hash != l.Hash {
			t.Fatalf("round trip %+v -> %+v", l, back)
		}
		if utf8.ValidString(cred) && back.Credential != cred || utf8.ValidString(detail) && back.Detail != detail {
			t.Fatalf("strings changed: %q %q -> %q %q", cred, detail, back.Credential, back.Detail)
		}
	})
}
