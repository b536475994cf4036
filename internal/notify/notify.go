package notify

import (
	"log/slog"
	"net/http"
	"syscall"
	"time"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/credspec"
)

// ErrSpec is wrapped by every Parse error.
var ErrSpec = credspec.ErrNotify

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

// Options configure a Notifier. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger // default: discard
	Clock  clock.Clock  // times retries; default clock.Real
}

// Parse reads a --notify spec.
func Parse(spec string, o Options) (*Notifier, error) {
	parsed, err := credspec.ParseNotify(spec)
	if err != nil {
		return nil, err
	}
	n := &Notifier{spec: spec, proc: "/proc", sig: parsed.Signal, comm: parsed.Process, url: parsed.URL}
	if n.url != "" {
		n.client = &http.Client{
			Timeout:       httpTimeout,
			Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	n.log, n.clock = o.Logger, o.Clock
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
