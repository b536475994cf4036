package kv

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestFieldValue(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr bool
	}{
		{name: "plain", raw: `"FAKE-api-key-123"`, want: "FAKE-api-key-123"},
		{name: "escapes", raw: `"a\"b\\c\/d\n\t\r\b\f"`, want: "a\"b\\c/d\n\t\r\b\f"},
		{name: "unicode", raw: `"\u00e9\u20ac"`, want: "é€"},
		{name: "surrogate pair", raw: `"\ud83d\ude00"`, want: "😀"},
		{name: "lone surrogate", raw: `"\ud83d"`, want: "\uFFFD"},
		{name: "raw utf8", raw: `"ключ"`, want: "ключ"},
		{name: "empty", raw: `""`, want: ""},
		{name: "null", raw: `null`, want: ""},
		{name: "number", raw: `12345`, want: "12345"},
		{name: "object", raw: `{"a":1}`, want: `{"a":1}`},
		{name: "bad escape", raw: `"\x"`, wantErr: true},
		{name: "short unicode", raw: `"\u12"`, wantErr: true},
		{name: "control char", raw: "\"a\x01\"", wantErr: true},
		{name: "unterminated", raw: `"abc`, wantErr: true},
		{name: "empty raw", raw: ``, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Value([]byte(tt.raw))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzUnquote: unquote agrees with encoding/json on every valid string
// literal, and rejects what encoding/json rejects.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`"FAKE"`, `"\u00e9"`, `"\ud83d\ude00"`, `"a\\b"`, `"\"`, `"\ud800\u0041"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		jsonErr := json.Unmarshal(raw, &want)
		got, err := unquote(raw)
		if jsonErr != nil || len(bytes.TrimSpace(raw)) != len(raw) {
			return // not a plain string literal: only check no panic
		}
		if err != nil {
			t.Fatalf("unquote(%q): %v; encoding/json gives %q", raw, err, want)
		}
		if string(got) != want {
			t.Fatalf("unquote(%q) = %q, encoding/json %q", raw, got, want)
		}
	})
}
