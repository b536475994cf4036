package manifests

import (
	"context"
	"testing"

	"github.com/credlet/credlet/internal/testenv"
)

// The package's real servers (nil under -short or when a binary is missing
// outside CI; tests call testenv.NeedServers).
var (
	vlt  *testenv.Vault
	kube *testenv.Kube
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		var err error
		if vlt, err = s.StartVault(ctx); err != nil {
			return err
		}
		kube, err = s.StartKube(ctx)
		return err
	})
}
