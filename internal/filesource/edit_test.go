package filesource

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// editFixture is a credentials file and its key.
type editFixture struct {
	dir, path string
	key       *Key
}

func newFixture(t *testing.T) *editFixture {
	t.Helper()
	f := &editFixture{dir: t.TempDir()}
	f.path = filepath.Join(f.dir, "credentials.enc")
	f.key, _ = newTestKey(t, f.dir, "master.key")
	return f
}

func (f *editFixture) put(t *testing.T, path string, cas int, kv ...string) {
	t.Helper()
	if err := Edit(context.Background(), f.path, f.key, func(d *Document) error {
		_, err := d.Put(path, fields(kv...), cas, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestEditSerializesWriters(t *testing.T) {
	f := newFixture(t)
	f.put(t, "secret/demo/c", 0, "n", "FAKE-0")
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Read-modify-write with CAS inside the lock: all succeed.
			errs <- Edit(context.Background(), f.path, f.key, func(d *Document) error {
				r, err := d.Get("secret/demo/c", 0)
				if err != nil {
					return err
				}
				_, err = d.Put("secret/demo/c", fields("n", "FAKE-"+string(rune('a'+i))), r.Version, time.Now())
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := Read(f.path, f.key)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Wipe()
	if r, _ := d.Get("secret/demo/c", 0); r.Version != writers+1 {
		t.Fatalf("version %d, want %d", r.Version, writers+1)
	}
	// A failing edit writes nothing.
	before, _ := os.ReadFile(f.path)
	err = Edit(context.Background(), f.path, f.key, func(d *Document) error {
		_, err := d.Put("secret/demo/c", fields("n", "FAKE-x"), 1, time.Now())
		return err
	})
	if !errors.Is(err, ErrCASConflict) {
		t.Fatalf("stale CAS: %v", err)
	}
	after, _ := os.ReadFile(f.path)
	if !bytes.Equal(before, after) {
		t.Fatal("a failed edit rewrote the file")
	}
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temp file left behind: %s", e.Name())
		}
	}
	fi, _ := os.Stat(f.path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v", fi.Mode().Perm())
	}
}
