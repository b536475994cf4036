package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrBadTail is returned by Open when the file's last record cannot be
// read, so the chain cannot be continued.
var ErrBadTail = errors.New("last audit record unreadable")

// File is an audit file opened for appending. It implements Chained, so a
// Logger writing to it continues the chain already in it.
type File struct {
	f        *os.File
	seq      uint64
	hash     string
	regular  bool // a regular file: synced; others (/dev/null, a FIFO) are not
	Repaired bool // the file ended in a torn line, which Open ended with a newline
}

// Open opens path for appending audit records; "-" is stdout. A regular
// file is created with mode 0600 (an existing one is set to 0600), locked
// against a second writer (flock), and its last record read, so that a
// restarted agent continues the chain: the first new record gets the next
// seq and the last hash as prev. A last line torn by a crash is ended with a
// newline and followed by a gap record chained to the record before it
// (Verify still reports the torn line). Other files (a FIFO, /dev/stdout,
// /dev/null) start a new chain and are never fsynced. The writer also has Sync; close it after the Logger's Run returned.
func Open(path string) (io.WriteCloser, error) {
	if path == "-" {
		return stdout{}, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	af := &File{f: f}
	if err := af.init(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("audit file %s: %w", path, err)
	}
	return af, nil
}

func (af *File) init() error {
	st, err := af.f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return nil
	}
	af.regular = true
	if err := unix.Flock(int(af.f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return errors.New("in use by another process (flock held); each agent needs its own audit file")
		}
		return fmt.Errorf("flock: %w", err)
	}
	if st.Mode().Perm() != 0o600 {
		if err := af.f.Chmod(0o600); err != nil {
			return fmt.Errorf("chmod 0600: %w", err)
		}
	}
	torn, err := af.readHead(st.Size())
	if err != nil {
		return err
	}
	if torn {
		return af.repair()
	}
	return nil
}

// repair ends a torn last line and follows it with a gap record, so the
// file again ends in a record the chain continues from (and a second crash
// before the logger writes anything still opens).
func (af *File) repair() error {
	gap := line{
		TS: time.Now(), Seq: af.seq + 1, Event: Gap, Result: resultDropped, Count: 1,
		Detail: "the line before was torn by a crash or a failed write; the chain continues from the record before it",
		Prev:   af.hash,
	}
	b := appendLine([]byte{'\n'}, &gap)
	if _, err := af.f.Write(b); err != nil {
		return fmt.Errorf("repair torn last line: %w", err)
	}
	af.seq, af.hash = gap.Seq, gap.Hash
	af.Repaired = true
	return nil
}

// readHead finds the last complete line in the file's final 2*maxLine bytes
// and takes its seq and hash. torn reports a final line without newline.
func (af *File) readHead(size int64) (torn bool, err error) {
	if size == 0 {
		return false, nil
	}
	n := min(size, 2*maxLine)
	tail := make([]byte, n)
	if _, err := af.f.ReadAt(tail, size-n); err != nil {
		return false, fmt.Errorf("read last record: %w", err)
	}
	whole := n == size // tail starts at the start of the file
	if tail[len(tail)-1] != '\n' {
		torn = true
		i := bytes.LastIndexByte(tail, '\n')
		if i < 0 {
			if whole {
				return true, nil // only a torn first line: a new chain
			}
			return false, fmt.Errorf("%w: last line longer than %d bytes", ErrBadTail, maxLine)
		}
		tail = tail[:i+1]
	}
	last := tail[:len(tail)-1]
	i := bytes.LastIndexByte(last, '\n')
	if i < 0 && !whole {
		return false, fmt.Errorf("%w: last line longer than %d bytes", ErrBadTail, maxLine)
	}
	last = last[i+1:]
	p, cerr := checkLine(last)
	if cerr != nil {
		return false, fmt.Errorf("%w: %s; move the file aside to start a new chain", ErrBadTail, cerr.Reason)
	}
	af.seq, af.hash = p.seq, p.hash
	return torn, nil
}

// Head returns the seq and hash of the last record in the file when it was
// opened (0 and "" for a new file).
func (af *File) Head() (seq uint64, hash string) { return af.seq, af.hash }

func (af *File) Write(p []byte) (int, error) { return af.f.Write(p) }

// Sync flushes a regular file to disk; on anything else (/dev/null, a
// FIFO, a terminal) it does nothing, as fsync there fails or means nothing.
func (af *File) Sync() error {
	if !af.regular {
		return nil
	}
	return af.f.Sync()
}

// Close closes the file (releasing its lock).
func (af *File) Close() error { return af.f.Close() }

// stdout writes to the process's standard output; it has no Sync (a pipe
// cannot be synced) and Close does nothing.
type stdout struct{}

func (stdout) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdout) Close() error                { return nil }
