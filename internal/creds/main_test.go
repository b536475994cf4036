package creds

import (
	"testing"

	"github.com/credlet/credlet/internal/testenv"
)

// vlt is the package's Vault dev server (nil under -short or when the
// binary is missing outside CI; see testenv.NeedServers).
var vlt *testenv.Vault

func TestMain(m *testing.M) { testenv.MainVault(m, &vlt) }
