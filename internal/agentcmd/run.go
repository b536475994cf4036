package agentcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/cliflag"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/sink/file"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/vault/lease"
	"github.com/credlet/credlet/internal/version"
)

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := ParseRun(args, osGetenv)
	if errors.Is(err, flag.ErrHelp) {
		var help RunConfig
		printFlags(newRunFlags(&help, osGetenv), stdout)
		return errHelp
	}
	if err != nil {
		return err
	}
	return Run(ctx, cfg, stdout, stderr)
}

// ParseRun parses the flags of `credlet-agent run` (args after "run"), fills
// those not given from CREDLET_<FLAG> through getenv, and checks the result
// as the agent does before it starts. An error is one line naming the flag
// and what is allowed; it matches flag.ErrHelp for -h and --help.
func ParseRun(args []string, getenv func(string) string) (RunConfig, error) {
	var cfg RunConfig
	fs := newRunFlags(&cfg, getenv)
	if err := parseFlags(fs, args, getenv); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, usageError("unexpected argument %q (credlet-agent run takes only flags)", fs.Arg(0))
	}
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func printFlags(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintln(w, "usage: credlet-agent run [flags]   (each flag also reads CREDLET_<FLAG>)")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// agent is the set of running components.
type agent struct {
	cfg     RunConfig
	log     *slog.Logger
	metrics *metrics.Agent
	audit   *audit.Logger
	store   *store.Store
	clock   clock.Clock
	runners []runner
	closers []func()

	tokens    *lease.Manager
	onceLogin func(context.Context) (stop func(), err error) // --once: log in and keep the token until stop
	onces     []func(context.Context) error                  // --once: fetch and commit each set
	fileSink  *file.Sink
}

type runner struct {
	name string
	run  func(context.Context) error
}

// Run runs the agent until ctx ends (or, with --once, until every credential
// is written). Logs go to stderr; the audit trail to --audit-file.
func Run(ctx context.Context, cfg RunConfig, stdout, stderr io.Writer) error {
	log := cliflag.NewLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if os.Getenv("GOGC") == "" {
		// The agent's heap is small and steady; collecting at 50% growth
		// keeps it under 20 MiB RSS after 100k reads (measured) at little
		// CPU cost. GOGC in the environment still wins.
		debug.SetGCPercent(50)
	}
	hard := securemem.Harden(true)
	m := metrics.New()
	reportHardening(log, m, hard)

	a := &agent{cfg: cfg, log: log, metrics: m, clock: clock.Real}
	defer a.close()

	auditW, err := openAudit(cfg.AuditFile, stdout)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, func() { _ = auditW.Close() })
	a.audit = audit.New(auditW, audit.Options{Logger: log, Clock: a.clock})
	m.Registry.MustRegister(a.audit.Collector())

	if err := a.build(ctx); err != nil {
		return err
	}
	log.Info("agent starting", "version", version.String(), "credentials", len(a.store.Names()),
		"socket", cfg.Socket, "secrets_dir", cfg.SecretsDir, "auth", cfg.Auth, "source", cfg.Source)

	// The audit writer outlives the other parts so their last records land.
	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	auditDone := make(chan error, 1)
	go func() { auditDone <- a.audit.Run(auditCtx) }()
	defer func() { stopAudit(); <-auditDone }()

	if cfg.Once {
		return a.once(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range a.runners {
		g.Go(func() error {
			if err := r.run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			return nil
		})
	}
	g.Go(func() error { return a.watchHealth(gctx) })
	if cfg.Listen != "" {
		g.Go(func() error { return a.serveHTTP(gctx) })
	}
	err = g.Wait()
	if err != nil {
		log.Error("agent stopped", "error", err)
		return err
	}
	log.Info("agent stopped")
	return nil
}

func (a *agent) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

func reportHardening(log *slog.Logger, m *metrics.Agent, r securemem.Report) {
	if r.LockedAll {
		m.MemoryLocked.WithLabelValues(metrics.ScopeProcess).Set(1)
	}
	attrs := []any{"non_dumpable", r.NonDumpable, "core_disabled", r.NoCore, "mlockall", r.LockedAll,
		"secretmem", r.Secretmem, "memlock_limit_bytes", r.MemlockMax}
	if r.LockAllErr != nil {
		attrs = append(attrs, "mlockall_error", r.LockAllErr.Error())
	}
	if !r.NonDumpable || !r.NoCore || (!r.Secretmem && !r.LockedAll) {
		log.Warn("memory protection incomplete", attrs...)
		return
	}
	log.Info("memory protection", attrs...)
}

// openAudit opens the audit destination: "-" is stdout.
func openAudit(path string, stdout io.Writer) (io.WriteCloser, error) {
	if path == "-" || path == "" {
		return nopCloser{stdout}, nil
	}
	w, err := audit.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--audit-file %s: %w", path, err)
	}
	return w, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// watchHealth keeps the readiness gauge and per-credential age gauges current.
func (a *agent) watchHealth(ctx context.Context) error {
	for {
		a.updateHealth()
		t := a.clock.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

func (a *agent) updateHealth() {
	now := a.clock.Now()
	ready := a.ready()
	if ready {
		a.metrics.Ready.Set(1)
	} else {
		a.metrics.Ready.Set(0)
	}
	for _, st := range a.store.Status() {
		if !st.CheckedAt.IsZero() {
			a.metrics.CredentialAge.WithLabelValues(st.Name).Set(now.Sub(st.CheckedAt).Seconds())
		}
	}
	if a.tokens != nil {
		if exp := a.tokens.Status().Expires; !exp.IsZero() {
			a.metrics.TokenTTL.Set(max(exp.Sub(now).Seconds(), 0))
		}
	}
	ms := securemem.CurrentStats()
	a.metrics.MemoryLocked.WithLabelValues(metrics.ScopeSecretmem).Set(float64(ms.Secretmem))
	a.metrics.MemoryLocked.WithLabelValues(metrics.ScopeBuffers).Set(float64(ms.Locked))
}

// ready is what /readyz and credlet_ready report: every required set is
// committed and, when files are delivered, on disk. The app's containers
// start on this, so a legacy app never finds its directory empty.
func (a *agent) ready() bool {
	if !a.store.Ready() {
		return false
	}
	if a.fileSink == nil {
		return true
	}
	onDisk := a.fileSink.Versions()
	for _, c := range a.cfg.Credentials {
		if !c.Optional && onDisk[c.Name] == 0 {
			return false
		}
	}
	return true
}

// serveHTTP serves /metrics, /healthz and /readyz on --listen.
func (a *agent) serveHTTP(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: waiting for credentials\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", a.cfg.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("metrics listening", "addr", ln.Addr().String())
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	}
}
