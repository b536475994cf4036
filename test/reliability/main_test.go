package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"

	"github.com/credlet/credlet/internal/testenv/refusedpeer"
)

// What TestMain set up, shared by the tests (which run one at a time: the
// outage tests stop the shared Vault).
var (
	vault    *testenv.Vault
	binDir   string
	agentBin string
)

// size is how hard the suite pushes.
type size struct {
	full        bool
	rotations   int           // rotation storm
	outage      time.Duration // each outage
	admissions  int           // webhook under load
	clients     int           // webhook clients
	slowloris   int           // slow connections held open
	readersEach int           // socket readers and file readers (each)
}

func sizes() size {
	if os.Getenv("CREDLET_RELIABILITY") == "full" {
		return size{full: true, rotations: 1000, outage: 60 * time.Second, admissions: 20_000, clients: 8, slowloris: 200, readersEach: 4}
	}
	return size{rotations: 150, outage: 4 * time.Second, admissions: 2_000, clients: 8, slowloris: 20, readersEach: 4}
}

func TestMain(m *testing.M) {
	refusedpeer.Main()
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		dir, err := os.MkdirTemp("", "credlet-reliability-")
		if err != nil {
			return err
		}
		s.Cleanup(func() error { return os.RemoveAll(dir) })
		binDir = dir
		v, err := s.StartVault(ctx)
		if err != nil {
			return err
		}
		vault = v
		agentBin = filepath.Join(dir, "credlet-agent")
		return goBuild(ctx, agentBin, "./agent")
	})
}

// goBuild builds a main package of this module. When the tests run with
// -race the binary is built with -race too, so a data race in the real
// process shows up in its log (checked when it stops).
func goBuild(ctx context.Context, out, pkg string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command must be on PATH to build the agent: %w", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo())
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// cgo: -race needs cgo; a normal build is static like the release one.
func cgo() string {
	if raceEnabled {
		return "1"
	}
	return "0"
}

var (
	injectorOnce sync.Once
	injectorBin  string
	injectorErr  error
)

// needInjector builds credlet-injector once, on first use, so the agent
// tests run even while the injector does not build.
func needInjector(t *testing.T) string {
	t.Helper()
	testenv.NeedServers(t)
	injectorOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		injectorBin = filepath.Join(binDir, "credlet-injector")
		injectorErr = goBuild(ctx, injectorBin, "./injector")
	})
	if injectorErr != nil {
		t.Fatal(injectorErr)
	}
	return injectorBin
}
