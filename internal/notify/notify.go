package notify

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/oneline"
)

// ErrSpec is wrapped by every Parse error.
var ErrSpec = errors.New("invalid notify spec")

const forms = "want signal:SIGNAL:PROCESS_NAME (SIGNAL one of HUP, INT, QUIT, USR1, USR2, TERM, WINCH) or http:URL (http:// or https://)"

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "WINCH": syscall.SIGWINCH,
}

// commLen is the kernel's TASK_COMM_LEN minus its NUL: /proc/PID/comm is
// cut to this many bytes.
const commLen = 15

// Retry schedule for one delivery.
const (
	retryFirst   = time.Second
	retryMax     = 30 * time.Second
	maxAttempts  = 6
	httpTimeout  = 5 * time.Second
	maxProcsRead = 1 << 16 // bound on /proc entries scanned
)

// Notifier announces new versions. Build it with Parse; Run it.
type Notifier struct {
	spec   string
	sig    syscall.Signal // signal form
	comm   string         // signal form: the comm to match
	url    string         // http form
	client *http.Client
	log    *slog.Logger
	clock  clock.Clock
	proc   string // /proc, for tests

	started func() // tests: called once Run has subscribed and taken stock
}

// Option configures a Notifier.
type Option func(*Notifier)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(n *Notifier) { n.log = l } }

// WithClock sets the clock that times retries.
func WithClock(c clock.Clock) Option { return func(n *Notifier) { n.clock = c } }

// Parse reads a --notify spec.
func Parse(spec string, opts ...Option) (*Notifier, error) {
	n := &Notifier{spec: spec, proc: "/proc"}
	kind, rest, _ := strings.Cut(spec, ":")
	switch kind {
	case "signal":
		name, proc, ok := strings.Cut(rest, ":")
		sig, known := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
		if !ok || !known {
			return nil, fmt.Errorf("%w %q: signal %q: %s", ErrSpec, oneline.Clip(spec, 80), oneline.Clip(name, 80), forms)
		}
		if proc == "" || strings.ContainsAny(proc, "/\x00\n") || len(proc) > 255 {
			return nil, fmt.Errorf("%w %q: process name %q: want a non-empty name without '/' (the process's /proc/PID/comm); %s", ErrSpec, oneline.Clip(spec, 80), oneline.Clip(proc, 80), forms)
		}
		n.sig, n.comm = sig, proc[:min(len(proc), commLen)]
	case "http":
		u, err := url.Parse(rest)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w %q: URL %q: %s", ErrSpec, oneline.Clip(spec, 80), oneline.Clip(rest, 80), forms)
		}
		n.url = u.String()
		n.client = &http.Client{
			Timeout:       httpTimeout,
			Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	default:
		return nil, fmt.Errorf("%w %q: %s", ErrSpec, oneline.Clip(spec, 80), forms)
	}
	for _, o := range opts {
		o(n)
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.clock == nil {
		n.clock = clock.Real
	}
	return n, nil
}

// String is the spec, for logs.
func (n *Notifier) String() string { return n.spec }
