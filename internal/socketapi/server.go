package socketapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/store"
)

// Defaults.
const (
	DefaultMaxWait     = 5 * time.Minute
	DefaultWaitTimeout = 30 * time.Second // a long poll without timeout=
	maxSocketPath      = 107              // sun_path is 108 bytes with its NUL
	readHeaderTimeout  = 5 * time.Second  // from a request's first byte to its end
	idleTimeout        = 2 * time.Minute  // between requests on a keep-alive connection
	writeTimeout       = 30 * time.Second
	shutdownGrace      = 5 * time.Second
	socketMode         = 0o660
	dirMode            = 0o750
)

// Options configure a Server.
type Options struct {
	Path      string   // socket path (≤ 107 bytes)
	AllowUIDs []uint32 // peers allowed by UID
	AllowGIDs []uint32 // peers allowed by primary GID
	Logger    *slog.Logger
	Metrics   *metrics.Agent // nil: no metrics
	Audit     *audit.Logger  // nil: no audit records
	Clock     clock.Clock    // long-poll timeouts; nil: clock.Real
	MaxWait   time.Duration  // cap on a long poll's timeout; 0: 5m
}

// Server serves the socket API. Build it with New, run it with Run.
type Server struct {
	st        *store.Store
	path      string
	allowUIDs []uint32
	allowGIDs []uint32
	log       *slog.Logger
	m         *metrics.Agent
	audit     *audit.Logger
	clock     clock.Clock
	maxWait   time.Duration
	codes     map[int]prometheus.Counter // SocketRequests by status, resolved once
}

// New checks the options and returns a Server. Run creates the socket. With
// neither AllowUIDs nor AllowGIDs, only the agent's own UID may read.
func New(st *store.Store, opts Options) (*Server, error) {
	if st == nil {
		return nil, errors.New("socketapi: nil store")
	}
	if opts.Path == "" {
		return nil, errors.New("socket path is empty: give an absolute path such as /credlet/run/agent.sock")
	}
	if len(opts.Path) > maxSocketPath {
		return nil, fmt.Errorf("socket path is %d bytes: a Unix socket path may have at most %d", len(opts.Path), maxSocketPath)
	}
	if opts.MaxWait < 0 {
		return nil, fmt.Errorf("max wait %s: must be positive", opts.MaxWait)
	}
	s := &Server{
		st: st, path: opts.Path, allowUIDs: opts.AllowUIDs, allowGIDs: opts.AllowGIDs,
		log: opts.Logger, m: opts.Metrics, audit: opts.Audit, clock: opts.Clock, maxWait: opts.MaxWait,
	}
	if len(s.allowUIDs) == 0 && len(s.allowGIDs) == 0 {
		s.allowUIDs = []uint32{uint32(os.Getuid())}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = clock.Real
	}
	if s.maxWait == 0 {
		s.maxWait = DefaultMaxWait
	}
	if s.m != nil {
		s.codes = map[int]prometheus.Counter{}
		for _, c := range []int{200, 304, 400, 403, 404, 405, 431, 503} {
			s.codes[c] = s.m.SocketRequests.WithLabelValues(strconv.Itoa(c))
		}
	}
	return s, nil
}

// Run creates the socket and serves until ctx ends. Then it stops
// accepting, answers open long polls 503, closes idle connections, waits up
// to 5s for answers in progress, and removes the socket. It returns nil on
// cancel.
func (s *Server) Run(ctx context.Context) error {
	ln, created, err := s.listen()
	if err != nil {
		return err
	}
	defer s.removeSocket(created)
	s.log.Info("socket listening", "path", s.path, "allow_uids", s.allowUIDs, "allow_gids", s.allowGIDs)

	var (
		mu    sync.Mutex
		conns = map[*conn]struct{}{}
		wg    sync.WaitGroup
	)
	// Connections end with ctx, or when accepting fails for good.
	cctx, stopConns := context.WithCancel(ctx)
	defer stopConns()
	acceptErr := make(chan error, 1)
	go func() {
		var delay time.Duration
		for {
			nc, err := ln.Accept()
			if err != nil {
				if cctx.Err() != nil {
					acceptErr <- nil
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					delay = min(max(2*delay, 5*time.Millisecond), time.Second)
					s.log.Warn("socket accept", "error", err.Error(), "retry_in", delay.String())
					time.Sleep(delay)
					continue
				}
				acceptErr <- err
				return
			}
			delay = 0
			c := s.newConn(nc)
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.serve(cctx)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	var runErr error
	select {
	case err := <-acceptErr:
		runErr = fmt.Errorf("socket %s: %w", s.path, err)
	case <-ctx.Done():
	}
	stopConns()
	_ = ln.Close()
	if runErr == nil {
		<-acceptErr
	}
	// Idle connections go now; busy ones finish their answer (long polls
	// see ctx end) and then close.
	mu.Lock()
	for c := range conns {
		c.closeIfIdle()
	}
	mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		mu.Lock()
		for c := range conns {
			_ = c.nc.Close()
		}
		mu.Unlock()
		<-done
	}
	if runErr != nil {
		return runErr
	}
	s.log.Info("socket closed", "path", s.path)
	return nil
}

// listen prepares the directory, clears a stale socket and binds a new one
// that is never more open than 0660.
func (s *Server) listen() (net.Listener, os.FileInfo, error) {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, nil, fmt.Errorf("socket directory: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Getuid() {
			if fi.Mode().Perm() != dirMode {
				if err := os.Chmod(dir, dirMode); err != nil {
					return nil, nil, fmt.Errorf("socket directory: %w", err)
				}
			}
		} else if fi.Mode().Perm()&0o007 != 0 {
			s.log.Warn("socket directory is not ours and is open to others; the socket's mode and the peer check still apply",
				"dir", dir, "mode", fi.Mode().Perm().String())
		}
	}
	if err := s.clearStale(); err != nil {
		return nil, nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), s.path)
	defer f.Close() // FileListener dups the descriptor
	// The inode bind creates takes the socket's mode (minus umask): start
	// closed, open to the group afterwards.
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return nil, nil, fmt.Errorf("socket: fchmod: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: s.path}); err != nil {
		return nil, nil, fmt.Errorf("socket: bind %s: %w", s.path, err)
	}
	created, err := os.Lstat(s.path)
	if err != nil {
		return nil, nil, fmt.Errorf("socket: %w", err)
	}
	if err := os.Chmod(s.path, socketMode); err != nil {
		_ = os.Remove(s.path)
		return nil, nil, fmt.Errorf("socket: chmod: %w", err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		_ = os.Remove(s.path)
		return nil, nil, fmt.Errorf("socket: listen: %w", err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		_ = os.Remove(s.path)
		return nil, nil, fmt.Errorf("socket: %w", err)
	}
	return ln, created, nil
}

// clearStale removes a socket left by a previous run, after checking that
// nobody answers on it. Anything that is not a socket is left alone.
func (s *Server) clearStale() error {
	fi, err := os.Lstat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("socket path %s exists and is not a socket (%s); refusing to remove it", s.path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", s.path, time.Second)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("socket %s: another process is serving it", s.path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("socket %s: probing the existing socket: %w", s.path, err)
	}
	if err := os.Remove(s.path); err != nil {
		return fmt.Errorf("socket: removing stale %s: %w", s.path, err)
	}
	s.log.Info("removed stale socket", "path", s.path)
	return nil
}

// removeSocket unlinks the socket if it is still the one Run created.
func (s *Server) removeSocket(created os.FileInfo) {
	if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, created) {
		_ = os.Remove(s.path)
	}
}
