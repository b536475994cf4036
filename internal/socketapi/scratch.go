package socketapi

import "github.com/credlet/credlet/internal/securemem"

// Scratch buffers for encoding answers that hold values: locked memory,
// wiped after each answer, kept on a bounded free list. (A sync.Pool would
// drop buffers without unmapping them.)

const (
	scratchSize = 4096 // one page: a credential set is usually far smaller
	scratchKeep = 16   // buffers kept for reuse; more in flight are freed after use
)

type scratchPool struct{ free chan *securemem.Buffer }

func newScratchPool() *scratchPool {
	return &scratchPool{free: make(chan *securemem.Buffer, scratchKeep)}
}

// get returns a buffer of at least n bytes.
func (p *scratchPool) get(n int) (*securemem.Buffer, error) {
	if n <= scratchSize {
		select {
		case b := <-p.free:
			return b, nil
		default:
		}
		return securemem.New(scratchSize)
	}
	return securemem.New(n)
}

// put wipes the used part of b and keeps or frees it.
func (p *scratchPool) put(b *securemem.Buffer, used int) {
	securemem.Wipe(b.Bytes()[:min(used, b.Len())])
	if b.Len() == scratchSize {
		select {
		case p.free <- b:
			return
		default:
		}
	}
	b.Free()
}

// close frees every kept buffer.
func (p *scratchPool) close() {
	for {
		select {
		case b := <-p.free:
			b.Free()
		default:
			return
		}
	}
}
