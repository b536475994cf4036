package reliability

import (
	"fmt"
	"testing"

	"github.com/credlet/credlet/internal/testenv"
)

// TestWebhookDenialSize: a pod with many bad annotations is denied with a
// message a person can read in `kubectl` output (≤ 4 KiB), naming the
// first problems, not one paragraph per annotation.
func TestWebhookDenialSize(t *testing.T) {
	testenv.NeedServers(t)
	inj := startInjector(t)
	ann := map[string]string{"credlet.io/role": "bot", "credlet.io/credential.zerodha": kvPrefix + "/zerodha"}
	for i := range 500 {
		ann[fmt.Sprintf("credlet.io/x%d", i)] = "v"
	}
	r, err := inj.admit(reviewOf("many", pod(ann)))
	if err != nil {
		t.Fatal(err)
	}
	if r.allowed {
		t.Fatal("500 unknown annotations allowed")
	}
	if len(r.message) > 4096 {
		t.Errorf("denial message is %d bytes for 500 unknown annotations; want ≤ 4096: %s", len(r.message), clip(r.message))
	}
}
