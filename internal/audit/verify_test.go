package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/clock"
)

// chain returns n records written by a Logger, one slice per line (each
// with its newline).
func chain(t testing.TB, n int) [][]byte {
	t.Helper()
	var buf syncBuffer
	fc := clock.NewFake(t0)
	l := New(&buf, Options{Clock: fc, QueueSize: n})
	events := []Event{Login, Fetch, Decrypt, Commit, Read, Renew, Deny, VerifyEvent}
	for i := range n {
		r := Record{Event: events[i%len(events)], Credential: "zerodha", Version: i/4 + 1, Result: "ok"}
		if r.Event == Read || r.Event == Deny {
			r.Peer = &Peer{UID: 1000, GID: 1000, PID: int32(100 + i)}
		}
		l.Log(r)
		fc.Advance(time.Millisecond)
	}
	ctx, cancel := contextCanceled()
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(buf.Bytes(), []byte("\n"))
	lines = lines[:len(lines)-1] // after the last newline
	if len(lines) != n {
		t.Fatalf("%d lines; want %d", len(lines), n)
	}
	return lines
}

func join(lines [][]byte) []byte { return bytes.Join(lines, nil) }

// rehash recomputes a line's hash after an edit, as a forger would.
func rehash(t testing.TB, ln []byte, prev string) []byte {
	t.Helper()
	l, cerr := parseLine(bytes.TrimSuffix(ln, []byte("\n")))
	if cerr != nil {
		t.Fatalf("rehash: %v", cerr)
	}
	if prev != "-" {
		l.Prev = prev
	}
	return appendLine(nil, l)
}

func hashOf(t testing.TB, ln []byte) string {
	t.Helper()
	l, cerr := parseLine(bytes.TrimSuffix(ln, []byte("\n")))
	if cerr != nil {
		t.Fatal(cerr)
	}
	return l.Hash
}

func TestVerifyDetectsTampering(t *testing.T) {
	const n = 10
	tests := []struct {
		name     string
		tamper   func(t *testing.T, lines [][]byte) []byte
		wantLine int
		wantErr  error
	}{
		{"intact", func(t *testing.T, l [][]byte) []byte { return join(l) }, 0, nil},
		{"empty file", func(t *testing.T, _ [][]byte) []byte { return nil }, 0, nil},
		{"edited middle line", func(t *testing.T, l [][]byte) []byte {
			l[4] = bytes.Replace(l[4], []byte(`"zerodha"`), []byte(`"upstox"`), 1)
			return join(l)
		}, 5, ErrEdited},
		{"edited and rehashed middle line", func(t *testing.T, l [][]byte) []byte {
			l[4] = rehash(t, bytes.Replace(l[4], []byte(`"ok"`), []byte(`"error"`), 1), "-")
			return join(l)
		}, 6, ErrSequence},
		{"reformatted line, same values", func(t *testing.T, l [][]byte) []byte {
			l[2] = bytes.Replace(l[2], []byte(`,"seq":`), []byte(`, "seq":`), 1)
			return join(l)
		}, 3, ErrEdited},
		{"removed middle line", func(t *testing.T, l [][]byte) []byte {
			return join(append(l[:6:6], l[7:]...))
		}, 7, ErrSequence},
		{"removed first line", func(t *testing.T, l [][]byte) []byte { return join(l[1:]) }, 1, ErrSequence},
		{"reordered lines", func(t *testing.T, l [][]byte) []byte {
			l[3], l[4] = l[4], l[3]
			return join(l)
		}, 4, ErrSequence},
		{"duplicated line", func(t *testing.T, l [][]byte) []byte {
			return join(append(l[:5:5], append([][]byte{l[4]}, l[5:]...)...))
		}, 6, ErrDuplicate},
		{"line moved back", func(t *testing.T, l [][]byte) []byte {
			return join(append(l[:8:8], l[2], l[8], l[9]))
		}, 9, ErrSequence},
		{"line replaced by one with the right seq from another chain", func(t *testing.T, l [][]byte) []byte {
			l[5] = rehash(t, l[5], strings.Repeat("ab", 32))
			return join(l)
		}, 6, ErrSequence},
		{"truncated mid-line", func(t *testing.T, l [][]byte) []byte {
			b := join(l)
			return b[:len(b)-20]
		}, n, ErrTruncated},
		{"truncated just before the newline", func(t *testing.T, l [][]byte) []byte {
			b := join(l)
			return b[:len(b)-1]
		}, n, ErrTruncated},
		{"torn last line ended with newline", func(t *testing.T, l [][]byte) []byte {
			l[n-1] = append(l[n-1][:30:30], '\n')
			return join(l)
		}, n, ErrTruncated},
		{"torn middle line", func(t *testing.T, l [][]byte) []byte {
			l[2] = append(l[2][:30:30], '\n')
			return join(l)
		}, 3, ErrMalformed},
		{"empty line", func(t *testing.T, l [][]byte) []byte {
			return join(append(l[:2:2], append([][]byte{[]byte("\n")}, l[2:]...)...))
		}, 3, ErrMalformed},
		{"unknown field", func(t *testing.T, l [][]byte) []byte {
			l[1] = bytes.Replace(l[1], []byte(`{"ts"`), []byte(`{"x":1,"ts"`), 1)
			return join(l)
		}, 2, ErrMalformed},
		{"unknown event", func(t *testing.T, l [][]byte) []byte {
			p, _ := parseLine(bytes.TrimSuffix(l[0], []byte("\n")))
			p.Event = "logout"
			l[0] = appendLine(nil, p)
			return join(l)
		}, 1, ErrMalformed},
		{"count zero written out", func(t *testing.T, l [][]byte) []byte {
			l[1] = bytes.Replace(l[1], []byte(`,"prev"`), []byte(`,"count":0,"prev"`), 1)
			return join(l)
		}, 2, ErrEdited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.tamper(t, chain(t, n))
			count, err := Verify(bytes.NewReader(data))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify = %v; want intact", err)
				}
				if want := bytes.Count(data, []byte("\n")); count != want {
					t.Fatalf("count %d; want %d", count, want)
				}
				return
			}
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("Verify = %d, %v; want a *ChainError at line %d", count, err, tc.wantLine)
			}
			if ce.Line != tc.wantLine || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = line %d (%v); want line %d, %v", ce.Line, err, tc.wantLine, tc.wantErr)
			}
			if count != tc.wantLine-1 {
				t.Errorf("count %d; want %d records before the bad line", count, tc.wantLine-1)
			}
		})
	}
}

var hashField = regexp.MustCompile(`,"hash":"[0-9a-f]{64}"}$`)

// TestHashDefinition re-computes each hash the way doc.go tells a security
// team to: strip the hash field with a regexp, SHA-256 the rest.
func TestHashDefinition(t *testing.T) {
	for i, ln := range chain(t, 8) {
		s := strings.TrimSuffix(string(ln), "\n")
		canon := hashField.ReplaceAllString(s, "}")
		if canon == s {
			t.Fatalf("line %d: no hash field at the end: %s", i+1, s)
		}
		sum := sha256.Sum256([]byte(canon))
		if want := hexSum(sum); !strings.Contains(s, `"hash":"`+want+`"`) {
			t.Fatalf("line %d: sha256 of %s is %s, not the line's hash", i+1, canon, want)
		}
	}
}

func hexSum(sum [32]byte) string { return hex.EncodeToString(sum[:]) }

// TestHashMatchesJQ checks the documented jq recipe, byte for byte, on
// records with awkward strings.
func TestHashMatchesJQ(t *testing.T) {
	jq, err := exec.LookPath("jq")
	if err != nil {
		t.Skip("jq not installed: the recipe in doc.go is checked where it is")
	}
	var buf syncBuffer
	l := New(&buf)
	details := []string{"plain", "quote \" backslash \\ slash /", "ctl \x00\x01\x1f\x7f \b\f\n\r\t", "html <>&", "u2028 \u2028 \u2029 é 日本", "bad utf8 \xff\xfe"}
	for _, d := range details {
		l.Log(Record{Event: Fetch, Credential: d, Result: "error", Detail: d, Peer: &Peer{UID: 4294967295, GID: 1, PID: 2147483647}})
	}
	ctx, cancel := contextCanceled()
	defer cancel()
	_ = l.Run(ctx)
	for i, ln := range bytes.SplitAfter(buf.Bytes(), []byte("\n")) {
		if len(ln) == 0 {
			continue
		}
		cmd := exec.Command(jq, "-cj", "del(.hash)")
		cmd.Stdin = bytes.NewReader(ln)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("jq on line %d: %v", i+1, err)
		}
		sum := sha256.Sum256(out)
		if h := hashOf(t, ln); hexSum(sum) != h {
			t.Errorf("line %d: jq prints %q, whose sha256 is not the hash %s\nline: %s", i+1, out, h, ln)
		}
	}
}

func TestVerifyLongLine(t *testing.T) {
	data := append(bytes.Repeat([]byte("x"), maxLine+10), '\n')
	_, err := Verify(bytes.NewReader(data))
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Line != 1 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Verify = %v; want malformed line 1", err)
	}
}

func TestVerifyReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Verify(&failingReader{data: join(chain(t, 3)), err: boom})
	var ce *ChainError
	if !errors.Is(err, boom) || errors.As(err, &ce) {
		t.Fatalf("Verify = %v; want the read error, not a chain error", err)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func ExampleVerify() {
	var buf bytes.Buffer
	l := New(&buf, Options{Clock: clock.NewFake(t0)})
	l.Log(Record{Event: Login, Result: "ok"})
	l.Log(Record{Event: Commit, Credential: "zerodha", Version: 7, Result: "ok"})
	ctx, cancel := contextCanceled()
	defer cancel()
	_ = l.Run(ctx) // writes what is queued, then returns: ctx is done

	n, err := Verify(bytes.NewReader(buf.Bytes()))
	fmt.Println(n, err)

	edited := bytes.Replace(buf.Bytes(), []byte(`"version":7`), []byte(`"version":6`), 1)
	_, err = Verify(bytes.NewReader(edited))
	fmt.Println(err)
	// Output:
	// 2 <nil>
	// audit chain broken at line 2: content does not match its hash: the line was edited
}
