package injectorcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/credlet/credlet/internal/certwatch"
	"github.com/credlet/credlet/internal/cliflag"
	"github.com/credlet/credlet/internal/injectorconfig"
	"github.com/credlet/credlet/internal/mutate"
	"github.com/credlet/credlet/internal/version"
	"github.com/credlet/credlet/internal/webhook"
)

// Main runs credlet-injector until ctx is cancelled (SIGTERM) and returns
// the exit code: 0 after a clean drain, 1 on a failure, 2 on a bad flag.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "credlet-injector:", err)
		return 2
	}
	if o.Version {
		fmt.Fprintln(stdout, "credlet-injector", version.String())
		return 0
	}
	log := cliflag.NewLogger(o.LogLevel, o.LogFormat, stderr)
	tuneRuntime(os.Getenv)
	if err := Run(ctx, o, log); err != nil {
		log.Error("credlet-injector stopped", "error", err)
		return 1
	}
	return 0
}

// Run builds the components from o and runs them until ctx ends.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	cfg, err := injectorconfig.Load(o.ConfigFile, injectorconfig.Settings{VaultAddr: o.VaultAddr, AgentImage: o.AgentImage})
	if err != nil {
		return err
	}
	metrics := webhook.NewMetrics(prometheus.NewRegistry())
	certs, err := certwatch.New(o.TLSCertFile, o.TLSKeyFile, certwatch.Options{
		Log: log.With("component", "certwatch"), Poll: o.CertPoll, OnReload: metrics.ObserveCert,
	})
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	metrics.SetCert(certs.Leaf())
	server := &webhook.Server{
		Addr:           o.Listen,
		GetCertificate: certs.GetCertificate,
		Mutate: &webhook.Edge{
			Handler: &mutate.Handler{Config: cfg, Log: log.With("component", "mutate"), Cache: mutate.NewPatchCache(o.PatchCache)},
			Log:     log.With("component", "webhook"),
			Metrics: metrics,
		},
		Log:           log.With("component", "webhook"),
		ShutdownDelay: o.ShutdownDelay,
		DrainTimeout:  o.DrainTimeout,
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return certs.Run(gctx) })
	g.Go(func() error { return server.Run(gctx) })
	if o.MetricsListen != "" {
		ms := &webhook.MetricsServer{Addr: o.MetricsListen, Metrics: metrics.Handler(), Ready: server.Ready, Log: log.With("component", "metrics")}
		g.Go(func() error { return ms.Run(gctx) })
	}
	log.Info("credlet-injector starting", "version", version.Version, "commit", version.Commit,
		"namespaces", len(cfg.Namespaces), "listen", o.Listen, "metrics_listen", o.MetricsListen)
	return g.Wait()
}
