package certwatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/credlet/credlet/internal/clock"
)

// Options tune a Watcher; zero values are the defaults.
type Options struct {
	Log *slog.Logger
	// Clock drives the poll and the debounce; default clock.Real.
	Clock clock.Clock
	// Poll is how often contents are compared; default 10s.
	Poll time.Duration
	// Debounce waits for a burst of events to settle; default 100ms.
	Debounce time.Duration
	// NoNotify disables fsnotify (tests of the poll).
	NoNotify bool
	// OnReload is called after every reload attempt that saw new contents:
	// err is nil when the new pair is in service.
	OnReload func(leaf *x509.Certificate, err error)
}

// Watcher serves the current certificate and reloads it on change.
type Watcher struct {
	certFile, keyFile string
	opts              Options

	cert    atomic.Pointer[tls.Certificate]
	mu      sync.Mutex // guards lastRaw
	lastRaw []byte
	updated chan struct{}
	started chan struct{} // closed once Run watches
}

// New loads the pair once; an error here means the injector cannot serve.
func New(certFile, keyFile string, opts Options) (*Watcher, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if opts.Poll <= 0 {
		opts.Poll = 10 * time.Second
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	w := &Watcher{certFile: certFile, keyFile: keyFile, opts: opts, updated: make(chan struct{}, 1), started: make(chan struct{})}
	changed, err := w.reload()
	if err != nil {
		return nil, err
	}
	if !changed {
		return nil, errors.New("load certificate: no contents")
	}
	return w, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (w *Watcher) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return w.cert.Load(), nil
}

// Leaf is the certificate in service.
func (w *Watcher) Leaf() *x509.Certificate { return w.cert.Load().Leaf }

// Updated receives after each successful reload; bursts coalesce.
func (w *Watcher) Updated() <-chan struct{} { return w.updated }

// reload reads both files and swaps the pair in when the contents changed
// and parse; changed is false when the contents are what is in service.
func (w *Watcher) reload() (changed bool, err error) {
	certPEM, err := os.ReadFile(w.certFile)
	if err != nil {
		return false, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(w.keyFile)
	if err != nil {
		return false, fmt.Errorf("read key: %w", err)
	}
	raw := append(append(append([]byte{}, certPEM...), 0), keyPEM...)
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Equal(raw, w.lastRaw) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil && pair.Leaf == nil {
		pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
	}
	if err != nil {
		return true, fmt.Errorf("load certificate %s and key %s: %w", w.certFile, w.keyFile, err)
	}
	w.lastRaw = raw
	w.cert.Store(&pair)
	select {
	case w.updated <- struct{}{}:
	default:
	}
	return true, nil
}

// Started is closed once Run is watching: a change made after it is seen.
func (w *Watcher) Started() <-chan struct{} { return w.started }

// Run watches until ctx is cancelled, then returns nil.
func (w *Watcher) Run(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if !w.opts.NoNotify {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			return fmt.Errorf("certwatch: %w", err)
		}
		defer fw.Close()
		for _, dir := range uniqueDirs(w.certFile, w.keyFile) {
			if err := fw.Add(dir); err != nil {
				return fmt.Errorf("certwatch: watch %s: %w", dir, err)
			}
		}
		events, errs = fw.Events, fw.Errors
	}
	poll := w.opts.Clock.NewTimer(w.opts.Poll)
	defer func() { poll.Stop() }()
	close(w.started)
	var debounce clock.Timer
	var debounceC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if debounce != nil {
				debounce.Stop()
			}
			return nil
		case ev := <-events:
			w.opts.Log.Debug("certificate directory changed", "path", ev.Name, "op", ev.Op.String())
			if debounce == nil {
				debounce = w.opts.Clock.NewTimer(w.opts.Debounce)
				debounceC = debounce.C()
			}
		case err := <-errs:
			w.opts.Log.Warn("certificate watch error", "error", err)
		case <-debounceC:
			debounce, debounceC = nil, nil
			w.check("notify")
		case <-poll.C():
			poll = w.opts.Clock.NewTimer(w.opts.Poll)
			w.check("poll")
		}
	}
}

func (w *Watcher) check(trigger string) {
	changed, err := w.reload()
	if !changed && err == nil {
		return
	}
	if err != nil {
		w.opts.Log.Error("certificate not reloaded; the previous one stays in service", "trigger", trigger, "error", err)
	} else {
		leaf := w.Leaf()
		w.opts.Log.Info("certificate reloaded", "trigger", trigger, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	}
	if w.opts.OnReload != nil {
		var leaf *x509.Certificate
		if err == nil {
			leaf = w.Leaf()
		}
		w.opts.OnReload(leaf, err)
	}
}

func uniqueDirs(files ...string) []string {
	var dirs []string
	seen := map[string]bool{}
	for _, f := range files {
		d := filepath.Dir(f)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}
