package cliflag

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    string
		unknown bool
		value   bool
	}{
		{[]string{"--wait", "soon"}, `--wait: "soon": parse error`, false, true},
		{[]string{"--colour"}, "unknown flag --colour (see prog --help)", true, false},
		{[]string{"-v", "--wait=1s", "--colour=red"}, "unknown flag --colour (see prog --help)", true, false},
		{[]string{"--wait", "--colour"}, `--wait: "--colour": parse error`, false, true},
		{[]string{"--wait"}, "flag needs an argument: -wait", false, false},
	} {
		fs := flag.NewFlagSet("prog", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Duration("wait", time.Second, "")
		fs.Bool("v", false, "")
		err := Parse(fs, tc.args, "prog")
		if err == nil {
			t.Fatalf("%v parsed", tc.args)
		}
		if got := err.Error(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.args, got, tc.want)
		}
		var ue *UnknownFlagError
		var fe *FlagError
		if errors.As(err, &ue) != tc.unknown || errors.As(err, &fe) != tc.value {
			t.Errorf("%v: %T, want unknown=%t value=%t", tc.args, err, tc.unknown, tc.value)
		}
	}
	fs := flag.NewFlagSet("prog", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wait := fs.Duration("wait", time.Second, "")
	if err := Parse(fs, []string{"--help"}, "prog"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp", err)
	}
	if err := Parse(fs, []string{"--wait=2s"}, "prog"); err != nil || *wait != 2*time.Second {
		t.Errorf("--wait=2s: %v %v", *wait, err)
	}
	if _, wrapped := fs.Lookup("wait").Value.(*recorder); wrapped {
		t.Error("Parse left its recorder on the flag")
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
