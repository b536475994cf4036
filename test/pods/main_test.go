package pods

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/cluster"
	"github.com/credlet/credlet/internal/testenv"
)

// The package's cluster (nil when it did not start; tests call
// testenv.NeedServers first) and the module root.
var (
	cl   *cluster.Cluster
	root string
)

// startTimeout bounds building the images and starting everything: the
// first start on a loaded 2-core machine links five binaries.
const startTimeout = 8 * time.Minute

func TestMain(m *testing.M) {
	isoErr := cluster.Isolate() // returns inside the run's namespaces
	flag.Parse()
	var startErr error
	var work string
	if !testing.Short() {
		if isoErr != nil {
			startErr = unavailable{isoErr}
		} else {
			work, startErr = start()
		}
	}
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		if cl != nil {
			s.Cleanup(func() error { return errors.Join(cl.Stop(), os.RemoveAll(work)) })
		}
		return startErr
	})
}

func start() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var err error
	if root, err = cluster.ModuleRoot(ctx); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "credlet-pods-")
	if err != nil {
		return "", err
	}
	begin := time.Now()
	archive, err := cluster.BuildImages(ctx, root, work)
	if err != nil {
		return work, err
	}
	fmt.Fprintf(os.Stderr, "pods: images built in %v\n", time.Since(begin).Round(time.Millisecond))
	c, err := cluster.Start(ctx, cluster.Options{Archives: []string{archive}, Log: os.Stderr})
	if err != nil {
		return work, err
	}
	cl = c
	if err := c.SetupVault(ctx, root); err != nil {
		return work, fmt.Errorf("vault setup: %w", err)
	}
	if err := c.DeployCredlet(ctx, root); err != nil {
		return work, fmt.Errorf("deploy credlet: %w; kubelet log ends:\n%s", err, tailFile(c.Logs("kubelet"), 3000))
	}
	fmt.Fprintf(os.Stderr, "pods: cluster with credlet ready in %v (logs: %s)\n", time.Since(begin).Round(time.Millisecond), filepath.Join(c.Dir, "logs"))
	return work, nil
}

// unavailable is an Isolate failure: like a missing server binary, it skips
// the tests outside CI and fails them under CI (testenv.Main's policy).
type unavailable struct{ err error }

func (u unavailable) Error() string        { return u.err.Error() }
func (u unavailable) Unwrap() error        { return u.err }
func (u unavailable) Is(target error) bool { return target == testenv.ErrBinaryMissing }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
