package certwatch

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/testcert"
)

type pair struct{ cert, key []byte }

func newPairs(t *testing.T, n int) (*testcert.CA, []pair) {
	t.Helper()
	ca, err := testcert.NewCA("certwatch test CA")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]pair, n)
	for i := range out {
		c, k, err := ca.Issue("injector.example.test", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = pair{c, k}
	}
	return ca, out
}

func serialOf(t *testing.T, p pair) string {
	t.Helper()
	dir := t.TempDir()
	cf, kf, err := testcert.WritePair(dir, p.cert, p.key)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(cf, kf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return w.Leaf().SerialNumber.String()
}

// run starts w and stops it at test end, checking Run returned nil.
func run(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func waitUpdated(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.Updated():
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
	}
}

// atomicWriterDir lays out files as the kubelet does for a Secret volume:
// name -> ..data/name, ..data -> ..<ts>/ ; swap replaces ..data in one rename.
type atomicWriterDir struct {
	dir string
	gen int
}

func (a *atomicWriterDir) publish(t *testing.T, files map[string][]byte) {
	t.Helper()
	a.gen++
	ts := filepath.Join(a.dir, "..2026_01_01_00_00_0"+string(rune('0'+a.gen)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(a.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	old, _ := os.Readlink(filepath.Join(a.dir, "..data"))
	tmp := filepath.Join(a.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(a.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(a.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReload(t *testing.T) {
	_, pairs := newPairs(t, 3)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string, p pair) (certFile, keyFile string, swap func(p pair))
	}{
		{"plain rewrite", func(t *testing.T, dir string, p pair) (string, string, func(pair)) {
			cf, kf, err := testcert.WritePair(dir, p.cert, p.key)
			if err != nil {
				t.Fatal(err)
			}
			return cf, kf, func(p pair) {
				if _, _, err := testcert.WritePair(dir, p.cert, p.key); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"secret volume ..data swap", func(t *testing.T, dir string, p pair) (string, string, func(pair)) {
			a := &atomicWriterDir{dir: dir}
			a.publish(t, map[string][]byte{"tls.crt": p.cert, "tls.key": p.key})
			return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), func(p pair) {
				a.publish(t, map[string][]byte{"tls.crt": p.cert, "tls.key": p.key})
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf, kf, swap := tt.setup(t, t.TempDir(), pairs[0])
			var mu sync.Mutex
			var reloads []error
			w, err := New(cf, kf, Options{Debounce: 20 * time.Millisecond, OnReload: func(_ *x509.Certificate, err error) {
				mu.Lock()
				reloads = append(reloads, err)
				mu.Unlock()
			}})
			if err != nil {
				t.Fatal(err)
			}
			<-w.Updated() // the initial load
			first := w.Leaf().SerialNumber.String()
			run(t, w)
			<-w.Started()
			for _, p := range pairs[1:] {
				swap(p)
				waitUpdated(t, w)
				if got, want := w.Leaf().SerialNumber.String(), serialOf(t, p); got != want {
					t.Fatalf("serving serial %s, want %s", got, want)
				}
			}
			if w.Leaf().SerialNumber.String() == first {
				t.Fatal("certificate never changed")
			}
			mu.Lock()
			defer mu.Unlock()
			for _, err := range reloads {
				if err != nil {
					t.Errorf("reload error: %v", err)
				}
			}
		})
	}
}

func TestBadPairKeepsOld(t *testing.T) {
	_, pairs := newPairs(t, 2)
	dir := t.TempDir()
	cf, kf, err := testcert.WritePair(dir, pairs[0].cert, pairs[0].key)
	if err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 10)
	w, err := New(cf, kf, Options{Debounce: 10 * time.Millisecond, OnReload: func(_ *x509.Certificate, err error) {
		if err != nil {
			failed <- err
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	<-w.Updated()
	want := w.Leaf().SerialNumber.String()
	run(t, w)
	<-w.Started()
	// the new certificate with the old key: a half-finished update
	if err := os.WriteFile(cf, pairs[1].cert, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("mismatched pair was not reported")
	}
	if got := w.Leaf().SerialNumber.String(); got != want {
		t.Fatalf("serving %s after a bad update, want the old %s", got, want)
	}
	if err := os.WriteFile(kf, pairs[1].key, 0o600); err != nil {
		t.Fatal(err)
	}
	waitUpdated(t, w)
	if got := w.Leaf().SerialNumber.String(); got != serialOf(t, pairs[1]) {
		t.Fatalf("serving %s after the update completed", got)
	}
}

func TestPoll(t *testing.T) {
	_, pairs := newPairs(t, 2)
	dir := t.TempDir()
	cf, kf, err := testcert.WritePair(dir, pairs[0].cert, pairs[0].key)
	if err != nil {
		t.Fatal(err)
	}
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	armed := fake.TimerCreated()
	w, err := New(cf, kf, Options{Clock: fake, Poll: time.Minute, NoNotify: true})
	if err != nil {
		t.Fatal(err)
	}
	<-w.Updated()
	run(t, w)
	<-armed
	if _, _, err := testcert.WritePair(dir, pairs[1].cert, pairs[1].key); err != nil {
		t.Fatal(err)
	}
	fake.Advance(59 * time.Second)
	select {
	case <-w.Updated():
		t.Fatal("reloaded before the poll interval")
	case <-time.After(100 * time.Millisecond):
	}
	fake.Advance(time.Second)
	waitUpdated(t, w)
	if got := w.Leaf().SerialNumber.String(); got != serialOf(t, pairs[1]) {
		t.Fatalf("serving %s after poll", got)
	}
}

func TestNewFails(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key"), Options{}); err == nil {
		t.Fatal("New succeeded without files")
	}
	cf, kf, _ := testcert.WritePair(dir, []byte("not pem"), []byte("not pem"))
	if _, err := New(cf, kf, Options{}); err == nil {
		t.Fatal("New succeeded with garbage")
	}
}
