package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/credlet/credlet/internal/testenv"
)

var (
	vault    *testenv.Vault
	agentBin string
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		dir, err := os.MkdirTemp("", "credlet-e2e-")
		if err != nil {
			return err
		}
		s.Cleanup(func() error { return os.RemoveAll(dir) })
		v, err := s.StartVault(ctx)
		if err != nil {
			return err
		}
		vault = v
		agentBin = filepath.Join(dir, "credlet-agent")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", agentBin, "./agent")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return &buildError{out: string(out), err: err}
		}
		return nil
	})
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "go build ./agent: " + e.err.Error() + "\n" + e.out }
