package filesource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/securemem"
)

// lockWait bounds how long Edit waits for another writer.
const lockWait = 10 * time.Second

// ErrLocked means another writer held the file's lock for too long.
var ErrLocked = errors.New("credentials file is locked by another writer")

// Read decrypts the file at path. A missing file is an error wrapping
// ErrNoFile. The caller should Wipe the document when done.
func Read(path string, k *Key) (*Document, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return decode(path, k, data)
}

func decode(path string, k *Key, data []byte) (*Document, error) {
	buf, n, err := open(k, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer buf.Free()
	var d Document
	if err := json.Unmarshal(buf.Bytes()[:n], &d); err != nil {
		d.Wipe()
		return nil, fmt.Errorf("%s: %w: decrypted but not valid JSON: %v", path, ErrCorrupt, err)
	}
	if d.Credentials == nil {
		d.Credentials = map[string]*Entry{}
	}
	return &d, nil
}

// Edit applies fn to the document at path and writes the result back
// atomically under an exclusive lock on path+".lock", so concurrent
// editors serialize and check-and-set in fn sees the latest version. A
// missing file starts as an empty document (Edit creates it, mode 0600).
// If fn fails nothing is written.
func Edit(ctx context.Context, path string, k *Key, fn func(*Document) error) error {
	unlock, err := lock(ctx, path+".lock")
	if err != nil {
		return err
	}
	defer unlock()

	d, err := Read(path, k)
	if errors.Is(err, ErrNoFile) {
		d, err = &Document{Credentials: map[string]*Entry{}}, nil
	}
	if err != nil {
		return err
	}
	defer d.Wipe()
	if err := fn(d); err != nil {
		return err
	}
	return write(path, k, d)
}

// Create writes d as a new file at path; it fails if path exists.
func Create(ctx context.Context, path string, k *Key, d *Document) error {
	unlock, err := lock(ctx, path+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: already exists", path)
	}
	return write(path, k, d)
}

func write(path string, k *Key, d *Document) error {
	plain, err := json.Marshal(d)
	if err != nil {
		return err
	}
	defer securemem.Wipe(plain)
	data, err := seal(k, plain)
	if err != nil {
		return err
	}
	if err := writeAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// lock takes an exclusive flock on path, polling until lockWait or ctx
// ends.
func lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("%w: %s held for over %s", ErrLocked, path, lockWait)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
