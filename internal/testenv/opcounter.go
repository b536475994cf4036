package testenv

import (
	"sync"
	"time"
)

// OpCounter counts Vault requests by operation. Its Observe method has the
// shape of vault.Observer (ClientConfig.Observer), so tests count what the
// agent's client sends without a proxy.
type OpCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// Observe records one request.
func (o *OpCounter) Observe(op string, _ int, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[op]++
}

// Get returns the requests seen for op.
func (o *OpCounter) Get(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[op]
}

// Total returns every request seen.
func (o *OpCounter) Total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, v := range o.n {
		n += v
	}
	return n
}
