package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// stdJSON is what encoding/json writes for s, without HTML escaping.
func stdJSON(t testing.TB, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestWriteJSONString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain", in: "FAKE-api-key-123", want: `"FAKE-api-key-123"`},
		{name: "empty", in: "", want: `""`},
		{name: "quote and backslash", in: `a"b\c`, want: `"a\"b\\c"`},
		{name: "newline tab cr", in: "a\nb\tc\rd", want: `"a\nb\tc\rd"`},
		{name: "backspace formfeed", in: "\b\f", want: `"\b\f"`},
		{name: "control", in: "\x00\x01\x1f\x7f", want: `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{name: "html left alone", in: "<a&b>", want: `"<a&b>"`},
		{name: "utf-8", in: "clé→秘密", want: `"clé→秘密"`},
		{name: "line separators", in: "a\u2028b\u2029", want: `"a\u2028b\u2029"`},
		{name: "invalid utf-8", in: "a\xffb\xc3", want: `"a\ufffdb\ufffd"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteJSONString(&b, []byte(tt.in)); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Fatalf("got %s, want %s", b.String(), tt.want)
			}
			if n := JSONStringLen([]byte(tt.in)); n != b.Len() {
				t.Fatalf("JSONStringLen = %d, wrote %d", n, b.Len())
			}
			if std := stdJSON(t, tt.in); std != tt.want {
				t.Fatalf("encoding/json writes %s, we write %s", std, tt.want)
			}
		})
	}
}

func FuzzWriteJSONString(f *testing.F) {
	for _, s := range []string{"", "FAKE", `"\`, "\x00\n", "\u2028", "\xff\xfe", "é"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var b bytes.Buffer
		if err := WriteJSONString(&b, p); err != nil {
			t.Fatal(err)
		}
		if JSONStringLen(p) != b.Len() {
			t.Fatalf("JSONStringLen %d != written %d", JSONStringLen(p), b.Len())
		}
		if want := stdJSON(t, string(p)); b.String() != want {
			t.Fatalf("got %s, encoding/json %s", b.String(), want)
		}
	})
}

func TestWriteFieldsJSON(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string][]byte
	}{
		{name: "none", fields: map[string][]byte{}},
		{name: "one", fields: fields("api_key", "FAKE-api-key-123")},
		{name: "several with escapes", fields: fields("b", "x\"y", "a", "line1\nline2", "we\"ird", "\xff")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := map[string]string{}
			for k, v := range tt.fields {
				want[k] = string(v)
			}
			wantJSON := stdJSON(t, want) // encoding/json sorts map keys, as Set does
			s := newStore(t)
			if err := s.Commit("acme", Meta{Version: 1}, tt.fields); err != nil {
				t.Fatal(err)
			}
			set, err := s.Acquire("acme")
			if err != nil {
				t.Fatal(err)
			}
			defer set.Release()
			var b bytes.Buffer
			if err := set.WriteFieldsJSON(&b); err != nil {
				t.Fatal(err)
			}
			if b.String() != wantJSON {
				t.Fatalf("got %s, want %s", b.String(), wantJSON)
			}
			if set.FieldsJSONLen() != b.Len() {
				t.Fatalf("FieldsJSONLen %d, wrote %d", set.FieldsJSONLen(), b.Len())
			}
		})
	}
}

type failWriter struct{ after int }

var errWrite = errors.New("write failed")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errWrite
	}
	w.after--
	return len(p), nil
}

func TestWriteFieldsJSONError(t *testing.T) {
	s := newStore(t)
	if err := s.Commit("acme", Meta{Version: 1}, fields("a", "FAKE-1", "b", "FAKE\n2")); err != nil {
		t.Fatal(err)
	}
	set, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Release()
	for after := range 12 {
		if err := set.WriteFieldsJSON(&failWriter{after: after}); !errors.Is(err, errWrite) {
			t.Fatalf("failing after %d writes: err = %v, want the writer's error", after, err)
		}
	}
}
