package credspec

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/credlet/credlet/internal/oneline"
)

// The hook parsers' error kinds (match with errors.Is).
var (
	ErrNotify    = errors.New("invalid notify spec")
	ErrVerifyURL = errors.New("invalid verify URL")
)

// NotifyForms says what a notify spec may be.
const NotifyForms = "want signal:SIGNAL:PROCESS_NAME (SIGNAL one of HUP, INT, QUIT, USR1, USR2, TERM, WINCH) or http:URL (http:// or https://)"

// VerifyAllowed says what a verify URL may be.
const VerifyAllowed = "allowed: http://127.0.0.1:PORT/PATH (any 127.0.0.0/8), http://[::1]:PORT/PATH, http://localhost:PORT/PATH, or unix:/path/to.sock"

// notifySignals are the signals a notify spec may name.
var notifySignals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "WINCH": syscall.SIGWINCH,
}

// commLen is the kernel's TASK_COMM_LEN minus its NUL: /proc/PID/comm is
// cut to this many bytes.
const commLen = 15

// Notify is a parsed --notify / credlet.io/notify spec: a signal to the
// processes whose /proc/PID/comm is Process, or an HTTP hook.
type Notify struct {
	Signal  syscall.Signal // signal form
	Process string         // signal form: the comm to match (at most 15 bytes)
	URL     string         // http form
}

// ParseNotify checks a notify spec. It is pure: the agent's notifier and
// the injector's annotation check both use it.
func ParseNotify(spec string) (Notify, error) {
	bad := func(format string, args ...any) error {
		return &Problem{Kind: ErrNotify, Text: fmt.Sprintf("%q: ", oneline.Clip(spec, 80)) + fmt.Sprintf(format, args...)}
	}
	kind, rest, _ := strings.Cut(spec, ":")
	switch kind {
	case "signal":
		name, proc, ok := strings.Cut(rest, ":")
		sig, known := notifySignals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
		if !ok || !known {
			return Notify{}, bad("signal %q: %s", oneline.Clip(name, 80), NotifyForms)
		}
		if proc == "" || strings.ContainsAny(proc, "/\x00\n") || len(proc) > 255 {
			return Notify{}, bad("process name %q: want a non-empty name without '/' (the process's /proc/PID/comm); %s", oneline.Clip(proc, 80), NotifyForms)
		}
		return Notify{Signal: sig, Process: proc[:min(len(proc), commLen)]}, nil
	case "http":
		u, err := url.Parse(rest)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Notify{}, bad("URL %q: %s", oneline.Clip(rest, 80), NotifyForms)
		}
		return Notify{URL: u.String()}, nil
	}
	return Notify{}, bad("%s", NotifyForms)
}

// VerifyTarget is a parsed --verify-url / credlet.io/verify-url: a Unix
// socket path, or a plain-http URL to a loopback address.
type VerifyTarget struct {
	UnixPath string // unix: form
	URL      string // http form, normalised
}

// ErrNotLoopback is wrapped when a verify hook's address is not loopback.
var ErrNotLoopback = errors.New("verify hook address is not loopback")

// ParseVerifyURL checks a verify hook URL. It is pure: the agent's
// verifier and the injector's annotation check both use it.
func ParseVerifyURL(raw string) (VerifyTarget, error) {
	bad := func(format string, args ...any) error {
		return &Problem{Kind: ErrVerifyURL, Text: fmt.Sprintf("%q: ", oneline.Clip(raw, 80)) + fmt.Sprintf(format, args...)}
	}
	if path, ok := strings.CutPrefix(raw, "unix:"); ok {
		if !strings.HasPrefix(path, "/") || len(path) > 107 || strings.ContainsAny(path, "?#") {
			return VerifyTarget{}, bad("a unix socket must be an absolute path of at most 107 bytes; %s", VerifyAllowed)
		}
		return VerifyTarget{UnixPath: path}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return VerifyTarget{}, bad("want plain http to a loopback address; %s", VerifyAllowed)
	}
	if host := u.Hostname(); host != "localhost" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return VerifyTarget{}, &Problem{Kind: ErrVerifyURL, Also: ErrNotLoopback, Text: fmt.Sprintf("%q: host %q is not loopback; %s", oneline.Clip(raw, 80), oneline.Clip(host, 80), VerifyAllowed)}
		}
	}
	return VerifyTarget{URL: u.String()}, nil
}
