package testenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Setup is what a Main setup function starts servers with: servers started
// through it are stopped when the tests are over.
type Setup struct {
	mu    sync.Mutex
	stops []func() error
}

// StartVault is StartVault, with Stop registered.
func (s *Setup) StartVault(ctx context.Context) (*Vault, error) {
	v, err := StartVault(ctx)
	if err == nil {
		s.Cleanup(v.Stop)
	}
	return v, err
}

// StartKube is StartKube, with Stop registered.
func (s *Setup) StartKube(ctx context.Context, opts ...KubeOption) (*Kube, error) {
	k, err := StartKube(ctx, opts...)
	if err == nil {
		s.Cleanup(k.Stop)
	}
	return k, err
}

// Cleanup registers f to run after the tests, last registered first.
func (s *Setup) Cleanup(f func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops = append(s.stops, f)
}

func (s *Setup) teardown() error {
	s.mu.Lock()
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	var errs []error
	for i := len(stops) - 1; i >= 0; i-- {
		errs = append(errs, stops[i]())
	}
	return errors.Join(errs...)
}

// What Main found, read by NeedServers. Written before m.Run starts the
// tests, so tests read it without a lock.
var (
	mainRan     bool
	serversErr  error // why the servers are not there (nil: they are)
	serversSkip bool  // true: tests needing them skip rather than fail
)

// errShort is serversErr under -short.
var errShort = errors.New("-short: server-backed tests skipped")

// Main is the body of a TestMain whose package shares servers between its
// tests. It runs setup (not under -short), runs the tests, stops what setup
// started through its Setup, and exits.
//
// When setup fails, the tests still run, so tests without servers report
// normally, and NeedServers decides for the others: if the failure is a
// missing binary (ErrBinaryMissing) outside CI they skip; under CI, or for
// any other failure, they fail, and Main exits non-zero even if no test
// called NeedServers.
//
// Servers die with the test binary in any case (see StartVault): a panic
// or a -timeout in a test runs no cleanup, but leaves nothing running.
func Main(m *testing.M, setup func(ctx context.Context, s *Setup) error) {
	os.Exit(runMain(m, setup))
}

// MainVault is Main for a package whose tests need one Vault dev server:
// it starts it into *v.
func MainVault(m *testing.M, v **Vault) {
	Main(m, func(ctx context.Context, s *Setup) error {
		var err error
		*v, err = s.StartVault(ctx)
		return err
	})
}

func runMain(m *testing.M, setup func(ctx context.Context, s *Setup) error) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	mainRan = true
	s := &Setup{}
	failed := false
	if testing.Short() {
		serversErr, serversSkip = errShort, true
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		start := time.Now()
		err := setup(ctx, s)
		cancel()
		switch {
		case err == nil:
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "testenv: servers ready in %v\n", time.Since(start).Round(time.Millisecond))
			}
		case errors.Is(err, ErrBinaryMissing) && !InCI():
			serversErr, serversSkip = err, true
			fmt.Fprintf(os.Stderr, "testenv: server-backed tests will skip: %v\n", err)
		default:
			serversErr, failed = err, true
			fmt.Fprintf(os.Stderr, "testenv: FAIL: servers did not start (CI=%t): %v\n", InCI(), err)
		}
	}
	code := m.Run()
	if err := s.teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stopping servers: %v\n", err)
		failed = true
	}
	if failed && code == 0 {
		code = 1
	}
	return code
}

// NeedServers marks a test that uses the servers Main started: it skips
// the test under -short or when a binary is missing outside CI, and fails it
// when the servers did not start otherwise. It fails the test when the
// package's TestMain does not use Main.
func NeedServers(tb testing.TB) {
	tb.Helper()
	switch {
	case !mainRan:
		tb.Fatal("testenv.NeedServers: the package's TestMain must call testenv.Main")
	case serversErr == nil:
	case serversSkip:
		tb.Skipf("skipping: %v", serversErr)
	default:
		tb.Fatalf("servers did not start: %v", serversErr)
	}
}
