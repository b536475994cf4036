package securemem

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Kind is where a Buffer's pages come from.
type Kind int

// Buffer kinds, best first.
const (
	KindSecretmem Kind = iota // memfd_secret: locked, out of the direct map
	KindLocked                // mmap + mlock + MADV_DONTDUMP
	KindUnlocked              // mmap + MADV_DONTDUMP; mlock was refused (RLIMIT_MEMLOCK)
)

func (k Kind) String() string {
	switch k {
	case KindSecretmem:
		return "secretmem"
	case KindLocked:
		return "locked"
	default:
		return "unlocked"
	}
}

// Buffer is a fixed-size block of protected memory. It is not safe to use
// after Free; Free itself may be called more than once.
type Buffer struct {
	mem  []byte // the whole mapping, page-rounded
	n    int    // usable length
	kind Kind
	once sync.Once
}

var (
	secretmemBytes atomic.Int64
	lockedBytes    atomic.Int64
	unlockedBytes  atomic.Int64
	secretmemOff   atomic.Bool // set once memfd_secret has been refused
)

// Stats reports how many bytes of live buffers are of each kind.
type Stats struct {
	Secretmem, Locked, Unlocked int64
}

// CurrentStats returns the bytes currently held in buffers, by kind.
func CurrentStats() Stats {
	return Stats{Secretmem: secretmemBytes.Load(), Locked: lockedBytes.Load(), Unlocked: unlockedBytes.Load()}
}

// DisableSecretmem makes New use mmap+mlock only (for tests and kernels where
// secretmem misbehaves).
func DisableSecretmem() { secretmemOff.Store(true) }

// New allocates a zeroed buffer of n bytes (n > 0).
func New(n int) (*Buffer, error) {
	if n <= 0 {
		return nil, fmt.Errorf("securemem: size %d: must be positive", n)
	}
	size := roundPage(n)
	if !secretmemOff.Load() {
		if mem, err := secretMap(size); err == nil {
			secretmemBytes.Add(int64(size))
			return &Buffer{mem: mem, n: n, kind: KindSecretmem}, nil
		} else if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
			secretmemOff.Store(true) // not offered here: stop trying
		}
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("securemem: mmap %d bytes: %w", size, err)
	}
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	kind := KindLocked
	if err := unix.Mlock(mem); err != nil {
		kind = KindUnlocked
		unlockedBytes.Add(int64(size))
	} else {
		lockedBytes.Add(int64(size))
	}
	return &Buffer{mem: mem, n: n, kind: kind}, nil
}

func secretMap(size int) ([]byte, error) {
	fd, _, errno := unix.Syscall(unix.SYS_MEMFD_SECRET, uintptr(unix.O_CLOEXEC), 0, 0)
	if errno != 0 {
		return nil, errno
	}
	defer unix.Close(int(fd))
	if err := unix.Ftruncate(int(fd), int64(size)); err != nil {
		return nil, err
	}
	return unix.Mmap(int(fd), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// Bytes is the buffer's memory. Never keep a slice of it past Free.
func (b *Buffer) Bytes() []byte { return b.mem[:b.n] }

// Len is the usable length.
func (b *Buffer) Len() int { return b.n }

// Kind says where the pages came from.
func (b *Buffer) Kind() Kind { return b.kind }

// Free zeroes and unmaps the buffer. Safe to call twice.
func (b *Buffer) Free() {
	if b == nil {
		return
	}
	b.once.Do(func() {
		clear(b.mem)
		size := int64(len(b.mem))
		switch b.kind {
		case KindSecretmem:
			secretmemBytes.Add(-size)
		case KindLocked:
			_ = unix.Munlock(b.mem)
			lockedBytes.Add(-size)
		default:
			unlockedBytes.Add(-size)
		}
		_ = unix.Munmap(b.mem)
		b.mem, b.n = nil, 0
	})
}

// Wipe zeroes p in place: for transient copies outside a Buffer.
func Wipe(p []byte) { clear(p) }

// WipeFields zeroes every value of a credential set's fields. The map keeps
// its keys; a nil map is fine.
func WipeFields(fields map[string][]byte) {
	for _, v := range fields {
		clear(v)
	}
}

func roundPage(n int) int {
	ps := unix.Getpagesize()
	return (n + ps - 1) / ps * ps
}

// ErrFull is returned by a Writer asked to write past its limit.
var ErrFull = errors.New("securemem: write past the buffer's end")

// Writer appends into a Buffer's memory and never grows past it: an
// encoding longer than planned fails with ErrFull instead of spilling
// plaintext into ordinary memory. Build one with Buffer.Writer.
type Writer struct {
	b   []byte
	err error
}

// Writer returns a Writer over the first n bytes of b (at most Len).
func (b *Buffer) Writer(n int) *Writer {
	return &Writer{b: b.Bytes()[:0:min(max(n, 0), b.Len())]}
}

// Write appends p, or fails with ErrFull and writes nothing.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(p) > cap(w.b)-len(w.b) {
		w.err = ErrFull
		return 0, w.err
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// WriteString appends s, or fails with ErrFull and writes nothing.
func (w *Writer) WriteString(s string) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(s) > cap(w.b)-len(w.b) {
		w.err = ErrFull
		return 0, w.err
	}
	w.b = append(w.b, s...)
	return len(s), nil
}

// Bytes is what has been written: a view into the Buffer.
func (w *Writer) Bytes() []byte { return w.b }

// Err is the first write error, if any.
func (w *Writer) Err() error { return w.err }
