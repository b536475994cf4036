package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The injector validates annotation strings with pure parsers
// (internal/credspec); it must not link the agent's runtime.
func TestInjectorLinksNoAgentRuntime(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !slices.Contains(deps, "github.com/credlet/credlet/internal/credspec") {
		t.Fatalf("go list -deps returned %d packages without credspec; expected the injector's dependency tree", len(deps))
	}
	const internal = "github.com/credlet/credlet/internal/"
	banned := []string{"store", "securemem", "notify", "verify", "source", "sink", "socketapi", "audit",
		"vault", "filesource", "creds", "agentcmd", "metrics"}
	for _, d := range deps {
		for _, b := range banned {
			if d == internal+b || strings.HasPrefix(d, internal+b+"/") {
				t.Errorf("credlet-injector links %s (agent runtime)", d)
			}
		}
		if d == "github.com/hashicorp/vault/api" {
			t.Errorf("credlet-injector links %s", d)
		}
	}
}
