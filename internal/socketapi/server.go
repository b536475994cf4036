package socketapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
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

	// DefaultMaxConns caps the connections served at once; past it a new
	// connection is answered 503 busy and closed.
	DefaultMaxConns = 1024
	// DefaultMaxConnsPerUID caps the connections of one peer UID.
	DefaultMaxConnsPerUID = 256
	// DefaultMaxLongPolls caps the long polls waiting at once; past it a
	// long poll is answered 503 busy at once.
	DefaultMaxLongPolls = 512

	// maxTurningAway caps the refused or over-cap connections that are
	// given turnAwayTimeout to send a request and read why they are
	// turned away; past it they are closed at once, unanswered.
	maxTurningAway  = 16
	turnAwayTimeout = time.Second
	// denySummaryInterval is how often repeated refusals are logged as
	// one line per peer.
	denySummaryInterval = time.Minute
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

	MaxConns       int // connections served at once; 0: DefaultMaxConns
	MaxConnsPerUID int // of one peer UID; 0: DefaultMaxConnsPerUID
	MaxLongPolls   int // long polls waiting at once; 0: DefaultMaxLongPolls
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

	maxConns, maxPerUID, maxPolls int
	polls                         atomic.Int64 // long polls waiting
	turningAway                   atomic.Int64 // connections being turned away
	denials                       denyLog
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
	if opts.MaxConns < 0 || opts.MaxConnsPerUID < 0 || opts.MaxLongPolls < 0 {
		return nil, fmt.Errorf("connection caps %d, %d per uid, %d long polls: must be positive", opts.MaxConns, opts.MaxConnsPerUID, opts.MaxLongPolls)
	}
	s := &Server{
		st: st, path: opts.Path, allowUIDs: opts.AllowUIDs, allowGIDs: opts.AllowGIDs,
		log: opts.Logger, m: opts.Metrics, audit: opts.Audit, clock: opts.Clock, maxWait: opts.MaxWait,
		maxConns: cmp.Or(opts.MaxConns, DefaultMaxConns), maxPerUID: cmp.Or(opts.MaxConnsPerUID, DefaultMaxConnsPerUID),
		maxPolls: cmp.Or(opts.MaxLongPolls, DefaultMaxLongPolls),
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
	s.log.Info("socket listening", "path", s.path, "allow_uids", s.allowUIDs, "allow_gids", s.allowGIDs,
		"max_conns", s.maxConns, "max_conns_per_uid", s.maxPerUID, "max_long_polls", s.maxPolls)

	conns := &connSet{perUID: map[uint32]int{}, all: map[*conn]struct{}{}}
	// Connections end with ctx, or when accepting fails for good.
	cctx, stopConns := context.WithCancel(ctx)
	defer stopConns()
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- s.accept(cctx, ln, conns) }()
	runErr, acceptDone := s.waitStop(ctx, acceptErr)
	stopConns()
	_ = ln.Close()
	if !acceptDone {
		<-acceptErr
	}
	conns.shutdown()
	s.denials.flush(s.log, s.clock.Now())
	if runErr != nil {
		return runErr
	}
	s.log.Info("socket closed", "path", s.path)
	return nil
}

// waitStop waits for ctx to end or accepting to stop, logging repeated
// refusals once per denySummaryInterval meanwhile. acceptDone reports
// whether the accept loop's result was taken.
func (s *Server) waitStop(ctx context.Context, acceptErr <-chan error) (err error, acceptDone bool) {
	for {
		t := s.clock.NewTimer(denySummaryInterval)
		select {
		case err := <-acceptErr:
			t.Stop()
			if err != nil {
				err = fmt.Errorf("socket %s: %w", s.path, err)
			}
			return err, true
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case now := <-t.C():
			s.denials.flush(s.log, now)
		}
	}
}

// accept accepts connections until ctx ends or accepting fails for good.
// Each peer is checked at once: a refused one, or one past the caps, is
// turned away and never gets a connection's buffers. Out of descriptors
// (or another temporary failure) it backs off, up to a second, while ctx
// lasts.
func (s *Server) accept(ctx context.Context, ln net.Listener, conns *connSet) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("socket accept", "error", err.Error(), "retry_in", delay.String())
				if !sleepCtx(ctx, delay) {
					return nil
				}
				continue
			}
			return err
		}
		delay = 0
		p := s.peerOf(nc)
		if !p.allowed {
			s.refused(p)
			s.turnAway(nc, p, conns)
			continue
		}
		if !conns.admit(p.UID, s.maxConns, s.maxPerUID) {
			s.turnAway(nc, p, conns)
			continue
		}
		c := s.newConn(nc, p)
		conns.add(c)
		go func() {
			defer conns.done(c)
			c.serve(ctx)
		}()
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// connSet tracks the connections being served, by peer UID for the caps.
type connSet struct {
	mu     sync.Mutex
	all    map[*conn]struct{}
	n      int // admitted and not done
	perUID map[uint32]int
	wg     sync.WaitGroup // served connections and those being turned away
}

// admit reserves a place for a connection of uid, if the caps allow it.
func (cs *connSet) admit(uid uint32, maxConns, maxPerUID int) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.n >= maxConns || cs.perUID[uid] >= maxPerUID {
		return false
	}
	cs.n++
	cs.perUID[uid]++
	return true
}

func (cs *connSet) add(c *conn) {
	cs.mu.Lock()
	cs.all[c] = struct{}{}
	cs.mu.Unlock()
	cs.wg.Add(1)
}

func (cs *connSet) done(c *conn) {
	cs.mu.Lock()
	delete(cs.all, c)
	cs.n--
	if cs.perUID[c.peer.UID]--; cs.perUID[c.peer.UID] <= 0 {
		delete(cs.perUID, c.peer.UID)
	}
	cs.mu.Unlock()
	cs.wg.Done()
}

// shutdown closes idle connections now and lets busy ones finish their
// answer (long polls see ctx end), closing what is left after
// shutdownGrace.
func (cs *connSet) shutdown() {
	cs.mu.Lock()
	for c := range cs.all {
		c.closeIfIdle()
	}
	cs.mu.Unlock()
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		cs.mu.Lock()
		for c := range cs.all {
			_ = c.nc.Close()
		}
		cs.mu.Unlock()
		<-done
	}
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
