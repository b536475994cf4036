package creds

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAssignments(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.txt")
	if err := os.WriteFile(keyFile, []byte("FAKE-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	crlf := filepath.Join(dir, "crlf.txt")
	if err := os.WriteFile(crlf, []byte("FAKE-crlf\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		want     map[string]string
		wantWarn string
		wantErr  string
	}{
		{name: "file and stdin", args: []string{"api_key=@" + keyFile, "api_secret=-"}, stdin: "FAKE-from-stdin\n",
			want: map[string]string{"api_key": "FAKE-from-file", "api_secret": "FAKE-from-stdin"}},
		{name: "crlf trimmed once", args: []string{"k=@" + crlf}, want: map[string]string{"k": "FAKE-crlf"}},
		{name: "stdin keeps inner newlines", args: []string{"pem=-"}, stdin: "line1\nline2\n\n", want: map[string]string{"pem": "line1\nline2\n"}},
		{name: "literal warns", args: []string{"token=FAKE-literal"}, want: map[string]string{"token": "FAKE-literal"},
			wantWarn: "the value of token was given on the command line"},
		{name: "value with equals", args: []string{"k=FAKE=x"}, want: map[string]string{"k": "FAKE=x"}, wantWarn: "shell history"},
		{name: "two stdin", args: []string{"a=-", "b=-"}, stdin: "x", wantErr: "only one field can read stdin"},
		{name: "duplicate", args: []string{"a=@" + keyFile, "a=@" + keyFile}, wantErr: `field "a" given twice`},
		{name: "no equals", args: []string{"FAKE-secret-typed-alone"}, wantErr: "field argument 1 is not FIELD="},
		{name: "bad field", args: []string{".x=@" + keyFile}, wantErr: `field name ".x"`},
		{name: "empty value", args: []string{"a="}, wantErr: "empty value"},
		{name: "empty file", args: []string{"a=@" + empty}, wantErr: "the value is empty"},
		{name: "missing file", args: []string{"a=@" + filepath.Join(dir, "nope")}, wantErr: "no such file"},
		{name: "none", args: nil, wantErr: "no fields given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warn strings.Builder
			got, err := ParseAssignments(tt.args, strings.NewReader(tt.stdin), &warn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want usage error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "FAKE") {
					t.Fatalf("error echoes a value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d fields, want %d", len(got), len(tt.want))
			}
			for k, v := range tt.want {
				if string(got[k]) != v {
					t.Errorf("field %s = %q, want %q", k, got[k], v)
				}
			}
			if !strings.Contains(warn.String(), tt.wantWarn) || (tt.wantWarn == "" && warn.Len() > 0) {
				t.Errorf("warning %q, want %q", warn.String(), tt.wantWarn)
			}
			if strings.Contains(warn.String(), "FAKE") {
				t.Errorf("warning echoes the value: %q", warn.String())
			}
		})
	}
}
