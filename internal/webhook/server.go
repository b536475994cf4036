package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the HTTPS admission server: /mutate, /healthz and /readyz.
type Server struct {
	// Addr is where to listen, e.g. ":8443"; ignored when Listener is set.
	Addr     string
	Listener net.Listener
	// GetCertificate serves the current certificate (certwatch.Watcher's).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Mutate         http.Handler
	Log            *slog.Logger
	// ShutdownDelay keeps serving, not ready, after cancellation so load
	// balancers and the apiserver's endpoints catch up; default 0.
	ShutdownDelay time.Duration
	// DrainTimeout bounds the wait for in-flight requests; default 20s.
	DrainTimeout time.Duration

	ready    atomic.Bool
	initOnce sync.Once
	bound    chan struct{} // closed once listening
	addr     atomic.Value  // net.Addr once listening
}

// Ready reports whether the server takes traffic: listening and not draining.
func (s *Server) Ready() bool { return s.ready.Load() }

// BoundAddr waits until Run listens and returns the address (for ":0").
func (s *Server) BoundAddr(ctx context.Context) (net.Addr, error) {
	s.init()
	select {
	case <-s.bound:
		return s.addr.Load().(net.Addr), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Server) init() {
	s.initOnce.Do(func() { s.bound = make(chan struct{}) })
}

// TLSConfig is the server's TLS configuration: TLS 1.2 at least, the
// certificate from GetCertificate on every handshake.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.GetCertificate}
}

// Handler is the server's mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/mutate", s.Mutate)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", readyz(s.Ready))
	return mux
}

func readyz(ready func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
}

// Run serves until ctx is cancelled, then stops being ready, waits
// ShutdownDelay, and drains in-flight requests. It returns nil after a
// clean drain.
func (s *Server) Run(ctx context.Context) error {
	s.init()
	if s.GetCertificate == nil {
		return errors.New("webhook server: no certificate")
	}
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return fmt.Errorf("webhook server: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
	}
	s.addr.Store(ln.Addr())
	close(s.bound)
	s.Log.Info("admission server listening", "addr", ln.Addr().String())
	return serve(ctx, srv, s.Log, &s.ready, s.ShutdownDelay, s.DrainTimeout, func() error { return srv.ServeTLS(ln, "", "") })
}

// MetricsServer serves /metrics, /healthz and /readyz over plain HTTP.
type MetricsServer struct {
	Addr     string
	Listener net.Listener
	Metrics  http.Handler
	Ready    func() bool
	Log      *slog.Logger
}

// Run serves until ctx is cancelled.
func (m *MetricsServer) Run(ctx context.Context) error {
	ln := m.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", m.Addr); err != nil {
			return fmt.Errorf("metrics server: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", readyz(m.Ready))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(m.Log.Handler(), slog.LevelWarn)}
	m.Log.Info("metrics server listening", "addr", ln.Addr().String())
	var serving atomic.Bool
	if m.Ready == nil {
		m.Ready = serving.Load
	}
	return serve(ctx, srv, m.Log, &serving, 0, 5*time.Second, func() error { return srv.Serve(ln) })
}

// serve runs start until ctx ends, then shuts srv down gracefully.
func serve(ctx context.Context, srv *http.Server, log *slog.Logger, ready *atomic.Bool, delay, drain time.Duration, start func() error) error {
	if drain <= 0 {
		drain = 20 * time.Second
	}
	errc := make(chan error, 1)
	go func() { errc <- start() }()
	ready.Store(true)
	select {
	case err := <-errc:
		ready.Store(false)
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	ready.Store(false)
	if delay > 0 {
		log.Info("shutting down: not ready, still serving", "delay", delay.String())
		time.Sleep(delay)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("drain: %w", err)
	}
	log.Info("server stopped", "addr", srv.Addr)
	return nil
}
