package cliflag

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--wait", "soon"}, `--wait: "soon": parse error`},
		{[]string{"--colour"}, "unknown flag --colour (see prog --help)"},
		{[]string{"--wait"}, "flag needs an argument: -wait"},
	} {
		fs := flag.NewFlagSet("prog", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Duration("wait", time.Second, "")
		err := fs.Parse(tc.args)
		if err == nil {
			t.Fatalf("%v parsed", tc.args)
		}
		if got := Clean(err, "prog"); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger("warn", "text", &buf)
	log.Info("hidden")
	log.Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "level=WARN msg=shown") {
		t.Errorf("text logger at warn wrote %q", out)
	}
	buf.Reset()
	log = NewLogger("debug", "json", &buf)
	log.Debug("d")
	if !strings.HasPrefix(buf.String(), `{"time":`) || !strings.Contains(buf.String(), `"level":"DEBUG"`) {
		t.Errorf("json logger wrote %q", buf.String())
	}
	for _, tc := range [][2]string{{"loud", "json"}, {"INFO", "json"}, {"info", "xml"}} {
		if err := CheckLog(tc[0], tc[1]); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("CheckLog(%q, %q): %v, want a one-line error", tc[0], tc[1], err)
		}
	}
}
