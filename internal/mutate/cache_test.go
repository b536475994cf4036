package mutate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestPatchCache(t *testing.T) {
	y, err := os.ReadFile(filepath.Join("testdata", "native-multi.pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	h := testHandler(t)
	h.Cache = NewPatchCache(2)
	first := h.Admit(context.Background(), podRequest("partner-acme", raw))
	if len(first.Patch) == 0 || h.Cache.Len() != 1 {
		t.Fatalf("first admission: patch %d bytes, cache %d", len(first.Patch), h.Cache.Len())
	}
	again := h.Admit(context.Background(), podRequest("partner-acme", raw))
	if &again.Patch[0] != &first.Patch[0] {
		t.Error("second admission of the same pod was not served from the cache")
	}
	// another namespace is another key, and here a denial, which is not cached
	if resp := h.Admit(context.Background(), podRequest("partner-zeta", raw)); resp.Allowed {
		t.Error("partner-zeta may not read acme's paths")
	}
	if h.Cache.Len() != 1 {
		t.Errorf("cache holds %d after a denial", h.Cache.Len())
	}
	// bounded, least recently used evicted
	for i := range 3 {
		other := bytes.Replace(raw, []byte(`"trader-0"`), fmt.Appendf(nil, `"trader-%d"`, i+1), 1)
		if resp := h.Admit(context.Background(), podRequest("partner-acme", other)); len(resp.Patch) == 0 {
			t.Fatal("no patch")
		}
	}
	if h.Cache.Len() != 2 {
		t.Errorf("cache holds %d, want its size 2", h.Cache.Len())
	}
	if _, ok := h.Cache.get(cacheKey("partner-acme", raw)); ok {
		t.Error("oldest entry not evicted")
	}
}

func TestPatchCacheConcurrent(t *testing.T) {
	c := NewPatchCache(8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := cacheKey("ns", fmt.Appendf(nil, "%d-%d", g, i%16))
				if p, ok := c.get(k); ok && len(p) != 1 {
					t.Error("corrupt entry")
				}
				c.put(k, []byte{1})
			}
		})
	}
	wg.Wait()
	if c.Len() > 8 {
		t.Errorf("cache grew to %d", c.Len())
	}
	if NewPatchCache(0) != nil || NewPatchCache(0).Len() != 0 {
		t.Error("a zero-size cache must be nil and usable")
	}
}
