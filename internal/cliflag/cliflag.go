// Package cliflag holds what credlet-agent and credlet-injector share on
// their command lines: one-line flag errors and the log flags.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// FlagError is a value its flag refused: "--name: "value": reason".
type FlagError struct {
	Flag  string
	Value string
	Err   error
}

func (e *FlagError) Error() string { return fmt.Sprintf("--%s: %q: %v", e.Flag, e.Value, e.Err) }
func (e *FlagError) Unwrap() error { return e.Err }

// UnknownFlagError is a flag the command does not define.
type UnknownFlagError struct {
	Flag    string
	Program string // the command, for the --help hint ("credlet-agent run")
}

func (e *UnknownFlagError) Error() string {
	return fmt.Sprintf("unknown flag --%s (see %s --help)", e.Flag, e.Program)
}

// recorder remembers which flag refused which value.
type recorder struct {
	flag.Value
	name   string
	failed **FlagError
}

func (r *recorder) Set(v string) error {
	err := r.Value.Set(v)
	if err != nil && *r.failed == nil {
		*r.failed = &FlagError{Flag: r.name, Value: v, Err: err}
	}
	return err
}

func (r *recorder) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Parse parses args into fs. Its error is one line naming the flag: a
// *FlagError for a value its flag refuses, an *UnknownFlagError for a flag
// fs does not define, flag.ErrHelp for -h or --help, else the flag
// package's own message (a missing argument). program names the command
// for the --help hint.
func Parse(fs *flag.FlagSet, args []string, program string) error {
	var failed *FlagError
	orig := map[string]flag.Value{}
	fs.VisitAll(func(f *flag.Flag) {
		orig[f.Name] = f.Value
		f.Value = &recorder{Value: f.Value, name: f.Name, failed: &failed}
	})
	err := fs.Parse(args)
	fs.VisitAll(func(f *flag.Flag) { f.Value = orig[f.Name] })
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return err
	case failed != nil:
		return failed
	}
	if name, ok := unknownFlag(fs, args); ok {
		return &UnknownFlagError{Flag: name, Program: program}
	}
	return err
}

// unknownFlag finds the first flag in args that fs does not define, walking
// args as the flag package does (it stops at "--" or the first non-flag).
func unknownFlag(fs *flag.FlagSet, args []string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return "", false
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			return name, true
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) {
			i++ // the next argument is the value
		}
	}
	return "", false
}

// CheckLog says in one line which of --log-level and --log-format is wrong
// and what is allowed.
func CheckLog(level, format string) error {
	switch level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: allowed debug, info, warn, error", level)
	}
	switch format {
	case "json", "text":
	default:
		return fmt.Errorf("--log-format %q: allowed json, text", format)
	}
	return nil
}

// NewLogger builds the logger --log-level and --log-format ask for. Callers
// check both with CheckLog while parsing flags; should a value slip past,
// the logger is JSON at info rather than none.
func NewLogger(level, format string, w io.Writer) *slog.Logger {
	if CheckLog(level, format) != nil {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
