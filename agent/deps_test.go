package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent runs in every trading pod: it must stay small and must not pull
// in a Kubernetes client.
func TestAgentLinksNoKubernetesClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps returned %d packages; expected the agent's dependency tree", len(deps))
	}
	for _, d := range deps {
		for _, banned := range []string{"k8s.io/client-go", "sigs.k8s.io/controller-runtime"} {
			if d == banned || strings.HasPrefix(d, banned+"/") {
				t.Errorf("credlet-agent links %s", d)
			}
		}
	}
}
