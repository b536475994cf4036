//go:build measure

package creds

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMeasureLifecycle times a rewrap of 1,000 sets and an apply of 100
// entries against the package's local Vault dev server, one run each:
//
//	go test -tags measure -run TestMeasureLifecycle -v ./internal/creds
//
// The numbers in the README come from it.
func TestMeasureLifecycle(t *testing.T) {
	ctx := context.Background()
	b := vaultWithToken(t, vlt.RootToken)
	pre := testPrefix(t)
	key := newKey(t, "", true, nil)
	const n = 1000
	var paths []string
	for i := range n {
		p := fmt.Sprintf("%s/p%02d/set%04d", pre, i%20, i)
		if _, err := Put(ctx, b, p, vals("api_key", fmt.Sprintf("FAKE-k%d", i), "api_secret", fmt.Sprintf("FAKE-s%d", i), "account", "FAKE-a"),
			WriteOptions{TransitKey: key, Context: "acme", TransitFields: []string{"api_key", "api_secret"}}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	rotateKey(t, key)
	var out bytes.Buffer
	start := time.Now()
	st, err := Rewrap(ctx, b, pre, RewrapOptions{Key: key, Context: "acme"}, &out)
	rewrap := time.Since(start)
	if err != nil || st.Rewrapped != n {
		t.Fatalf("rewrap: %+v %v", st, err)
	}

	// Every given field encrypted, as the sets were written.
	d := newPlanDir(t)
	var sb strings.Builder
	sb.WriteString("rotations:\n")
	for i, p := range paths[:100] {
		fmt.Fprintf(&sb, "  - path: %s\n    transit: %s\n    context: acme\n    fields:\n      api_key: \"@%s\"\n      api_secret: \"@%s\"\n",
			p, key, d.value(fmt.Sprintf("key-%d", i), "FAKE-new-key"), d.value(fmt.Sprintf("secret-%d", i), "FAKE-new-secret"))
	}
	plan := d.plan(sb.String())
	journal := filepath.Join(d.dir, "j")
	out.Reset()
	start = time.Now()
	if err := Apply(ctx, b, plan, ApplyOptions{Journal: journal}, &out); err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	apply := time.Since(start)
	t.Logf("GOMAXPROCS %d, %s", runtime.GOMAXPROCS(0), strings.TrimSpace(runtime.Version()))
	t.Logf("rewrap of %d sets (2 ciphertexts each; %d workers): %v", n, DefaultRewrapWorkers, rewrap.Round(time.Millisecond))
	t.Logf("apply of 100 entries (validation + writes + journal): %v", apply.Round(time.Millisecond))
}
