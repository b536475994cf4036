package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/credlet/credlet/internal/socketapi"
)

// TestGetPrevious: after a rotation GetPrevious returns the version before
// the current one; with one version held, or for an unknown set, it is
// ErrNotFound at once (not retried).
func TestGetPrevious(t *testing.T) {
	a := newAgent(t, socketapi.Options{})
	c := New(a.Path, fast()...)
	ctx := context.Background()

	a.commit(1)
	if _, err := c.GetPrevious(ctx, "acme"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no previous version") {
		t.Fatalf("one version held: %v; want ErrNotFound naming the missing previous version", err)
	}
	if _, err := c.GetPrevious(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown set: %v; want ErrNotFound", err)
	}

	a.commit(2)
	a.commit(3)
	prev, err := c.GetPrevious(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if prev.Version != 2 || prev.Fields["api_key"] != "FAKE-api-key-v2" {
		t.Fatalf("GetPrevious = %s, api_key matches v2: %v", prev, prev.Fields["api_key"] == "FAKE-api-key-v2")
	}
	cur, err := c.Get(ctx, "acme")
	if err != nil || cur.Version != 3 {
		t.Fatalf("Get after GetPrevious = %v, %v", cur, err)
	}
}
