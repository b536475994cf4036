package mutate

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// BenchmarkAdmit is one admission without HTTP or TLS: decode, plan,
// mutate, diff, encode the patch.
func BenchmarkAdmit(b *testing.B) {
	h := testHandler(b)
	y, err := os.ReadFile(filepath.Join("testdata", "native-multi.pod.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		b.Fatal(err)
	}
	req := podRequest("partner-acme", raw)
	b.ReportAllocs()
	for b.Loop() {
		if resp := h.Admit(context.Background(), req); len(resp.Patch) == 0 {
			b.Fatal("no patch")
		}
	}
}
