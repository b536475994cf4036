// Package cliflag holds what credlet-agent and credlet-injector share on
// their command lines: one-line flag errors and the log flags.
package cliflag

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Clean turns the flag package's messages into one line of the form
// "--name: problem". program names the command for --help in the message
// about an unknown flag ("credlet-agent run").
func Clean(err error, program string) string {
	msg := err.Error()
	if name, rest, ok := strings.Cut(msg, "invalid value "); ok && name == "" {
		// invalid value "x" for flag -name: reason
		if q, r, ok := strings.Cut(rest, " for flag -"); ok {
			flagName, reason, _ := strings.Cut(r, ": ")
			return fmt.Sprintf("--%s: %s: %s", flagName, q, reason)
		}
	}
	if rest, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unknown flag --%s (see %s --help)", strings.TrimPrefix(rest, "-"), program)
	}
	return msg
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
