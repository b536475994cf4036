package injectorconfig_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/credlet/credlet/internal/injectorconfig"
)

func Example() {
	dir, _ := os.MkdirTemp("", "credlet-config")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "config.yaml")
	_ = os.WriteFile(path, []byte(`
defaults:
  vaultAddr: https://vault.example.test:8200
namespaces:
  partner-acme:
    allowedPaths: [secret/partners/acme]
`), 0o600)

	cfg, err := injectorconfig.Load(path, injectorconfig.Settings{AgentImage: "registry.example.test/credlet-agent:v1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, ok := cfg.Policy("partner-acme")
	fmt.Println(ok, p.VaultAddr, p.AgentImage, p.Memory.String())
	fmt.Println(p.Allows("secret", "partners/acme/exa"), p.Allows("secret", "partners/zeta/exa"))
	_, ok = cfg.Policy("default")
	fmt.Println(ok)
	// Output:
	// true https://vault.example.test:8200 registry.example.test/credlet-agent:v1 32Mi
	// true false
	// false
}
