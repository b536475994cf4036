package mutate

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// PatchCache remembers the patch computed for a pod, keyed by the SHA-256
// of its namespace and raw object. The mutation is a pure function of those
// and of the config, which does not change while the injector runs. Pods a
// ReplicaSet creates are byte-identical at mutating admission (no name, UID
// or timestamp yet), so a scale-up to N replicas computes one diff, not N.
// Least recently used entries are evicted beyond its size. Safe for
// concurrent use; the zero value is unusable, use NewPatchCache.
type PatchCache struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *cacheEntry, most recent first
	byKey map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	key   [sha256.Size]byte
	patch []byte // never modified after insertion
}

// NewPatchCache holds up to size patches; size <= 0 returns nil, which
// caches nothing.
func NewPatchCache(size int) *PatchCache {
	if size <= 0 {
		return nil
	}
	return &PatchCache{size: size, order: list.New(), byKey: make(map[[sha256.Size]byte]*list.Element, size)}
}

func cacheKey(namespace string, raw []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(namespace))
	h.Write([]byte{0})
	h.Write(raw)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *PatchCache) get(key [sha256.Size]byte) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).patch, true
}

func (c *PatchCache) put(key [sha256.Size]byte, patch []byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry{key: key, patch: patch})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry).key)
	}
}

// Len is how many patches are held.
func (c *PatchCache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
