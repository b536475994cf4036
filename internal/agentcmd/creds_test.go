package agentcmd

import (
	"bytes"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/credlet/credlet/internal/filesource"
)

// fileSource makes a master key and names an encrypted credentials file
// beside it (not created yet): the key file and the --source value.
func fileSource(t *testing.T) (key, src string) {
	t.Helper()
	dir := t.TempDir()
	key = filepath.Join(dir, "master.key")
	k, err := filesource.GenerateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	return key, "file:" + filepath.Join(dir, "credentials.enc")
}

func TestCredsCommandFileSource(t *testing.T) {
	key, src := fileSource(t)
	t.Setenv("CREDLET_MASTER_KEY_FILE", key) // env fallback for the flag
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		inStdout string
		inStderr string
	}{
		{"put from stdin", []string{"creds", "put", "secret/demo/exchange", "api_key=-", "--source", src}, "FAKE-1\n", 0, "created secret/demo/exchange version 1", ""},
		{"put again conflicts", []string{"creds", "--source=" + src, "put", "secret/demo/exchange", "api_key=-"}, "FAKE-2\n", 1, "", "already exists at version 1"},
		{"rotate with flags after args", []string{"creds", "rotate", "secret/demo/exchange", "api_key=-", "--source", src}, "FAKE-3\n", 0, "version 2 on top of version 1", ""},
		{"cas on rotate", []string{"creds", "rotate", "secret/demo/exchange", "api_key=-", "--cas", "1", "--source", src}, "FAKE-4\n", 2, "", "--cas applies to put"},
		{"stale cas", []string{"creds", "put", "--cas", "1", "secret/demo/exchange", "api_key=-", "--source", src}, "FAKE-4\n", 1, "", "expected version 1, it is now 2"},
		{"history", []string{"creds", "history", "secret/demo/exchange", "--source", src}, "", 0, "2        ", ""},
		{"transit on file", []string{"creds", "rotate", "secret/demo/exchange", "api_key=-", "--transit", "k", "--source", src}, "FAKE-5\n", 2, "", "--transit applies to --source vault only"},
		{"no command", []string{"creds", "--source", src}, "", 2, "", "creds needs a command"},
		{"unknown command", []string{"creds", "frob", "--source", src}, "", 2, "", `unknown creds command "frob"`},
		{"unknown flag", []string{"creds", "list", "secret", "--frob"}, "", 2, "", "unknown flag --frob"},
		{"flag without value", []string{"creds", "list", "secret", "--source"}, "", 2, "", "--source needs a value"},
		{"bad source", []string{"creds", "list", "secret", "--source", "s3:x"}, "", 2, "", `--source "s3:x"`},
		{"revoke", []string{"creds", "revoke", "secret/demo/exchange", "--source", src}, "", 0, "revoked secret/demo/exchange version 2", ""},
		{"help", []string{"creds", "--help"}, "", 0, "usage: credlet-agent creds", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(tt.args, strings.NewReader(tt.stdin), &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.inStdout) || !strings.Contains(errb.String(), tt.inStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.code, tt.inStdout, tt.inStderr)
			}
			if strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
				t.Errorf("stderr is not one line: %q", errb.String())
			}
			if strings.Contains(out.String()+errb.String(), "FAKE") {
				t.Errorf("a value was printed: %q %q", out.String(), errb.String())
			}
		})
	}
}

func TestSplitInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("source", "", "")
	fs.Bool("replace", false, "")
	tests := []struct {
		args      []string
		flags     []string
		pos       []string
		wantError bool
	}{
		{[]string{"put", "p", "a=-", "--source", "x"}, []string{"--source", "x"}, []string{"put", "p", "a=-"}, false},
		{[]string{"--replace", "rotate", "p", "a=@f"}, []string{"--replace"}, []string{"rotate", "p", "a=@f"}, false},
		{[]string{"rotate", "--source=x", "p", "--", "--odd=@f"}, []string{"--source=x"}, []string{"rotate", "p", "--odd=@f"}, false},
		{[]string{"rotate", "-", "p"}, nil, []string{"rotate", "-", "p"}, false},
		{[]string{"list", "--source"}, nil, nil, true},
	}
	for _, tt := range tests {
		f, p, err := splitInterleaved(fs, tt.args)
		if (err != nil) != tt.wantError || !slices.Equal(f, tt.flags) || !slices.Equal(p, tt.pos) {
			t.Errorf("splitInterleaved(%q) = %q, %q, %v", tt.args, f, p, err)
		}
	}
}
