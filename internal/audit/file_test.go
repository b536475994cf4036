package audit

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/credlet/credlet/internal/testlog"
)

// writeSession opens path, logs n records, stops the logger and closes.
func writeSession(t *testing.T, path string, n int) {
	t.Helper()
	w, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	l := New(w)
	for i := range n {
		l.Log(Record{Event: Fetch, Credential: "c", Version: i + 1, Result: "ok"})
	}
	ctx, cancel := contextCanceled()
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func verifyFile(t *testing.T, path string) (int, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Verify(f)
}

func TestOpenContinuesChainAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeSession(t, path, 3)
	writeSession(t, path, 2) // a restarted agent
	writeSession(t, path, 0) // one that logged nothing
	writeSession(t, path, 1)
	if n, err := verifyFile(t, path); err != nil || n != 6 {
		t.Fatalf("Verify = %d, %v; want 6 records in one chain", n, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v; want 0600", st.Mode().Perm())
	}
}

func TestOpenTightensMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	writeSession(t, path, 1)
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v; want 0600", st.Mode().Perm())
	}
}

func TestOpenAfterTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeSession(t, path, 3)
	data, _ := os.ReadFile(path)
	// A crash mid-write: half of a fourth record.
	lines := bytes.SplitAfter(data, []byte("\n"))
	torn := append(bytes.Clone(data), lines[1][:40]...)
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path)
	if err != nil {
		t.Fatalf("Open after a torn line: %v", err)
	}
	if !w.(*File).Repaired {
		t.Error("Repaired not set")
	}
	if seq, _ := w.(Chained).Head(); seq != 4 {
		t.Errorf("head seq %d; want 4: the gap record after the torn line", seq)
	}
	_ = w.Close()
	writeSession(t, path, 0) // crashed again before logging: still opens
	writeSession(t, path, 2)

	// The torn line stays visible; the gap record and the records after it
	// chain on from line 3.
	_, err = verifyFile(t, path)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Line != 4 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Verify = %v; want malformed line 4 (the torn one)", err)
	}
	data, _ = os.ReadFile(path)
	lines = bytes.SplitAfter(data, []byte("\n"))
	repaired := bytes.Join(append(lines[:3:3], lines[4:]...), nil)
	if n, err := Verify(bytes.NewReader(repaired)); err != nil || n != 6 {
		t.Fatalf("without the torn line: Verify = %d, %v; want 3 + gap + 2", n, err)
	}
	if !bytes.Contains(lines[4], []byte(`"event":"gap"`)) {
		t.Fatalf("line 5 = %s; want the gap record", lines[4])
	}
}

func TestOpenBadTail(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"garbage last line", "not an audit record\n"},
		{"edited last record", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			data := []byte(tc.data)
			if tc.data == "" {
				writeSession(t, path, 2)
				data, _ = os.ReadFile(path)
				data = bytes.Replace(data, []byte(`"version":2`), []byte(`"version":9`), 1)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path); !errors.Is(err, ErrBadTail) {
				t.Fatalf("Open = %v; want ErrBadTail", err)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if w2, err := Open(path); err == nil {
		_ = w2.Close()
		t.Fatal("second Open of a file in use succeeded")
	}
	_ = w.Close()
	w3, err := Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = w3.Close()
}

func TestOpenStdout(t *testing.T) {
	w, err := Open("-")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(interface{ Sync() error }); ok {
		t.Error("stdout writer has Sync; a pipe cannot be synced")
	}
	if err := w.Close(); err != nil {
		t.Error(err)
	}
}

// TestDevNullNoFsyncError: --audit-file /dev/null (a character device)
// takes records without an fsync error logged.
func TestDevNullNoFsyncError(t *testing.T) {
	w, err := Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var logs testlog.Buffer
	l := New(w, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	l.Log(Record{Event: Fetch, Credential: "c", Version: 1, Result: "ok"})
	ctx, cancel := contextCanceled()
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if logs.String() != "" {
		t.Fatalf("audit to %s logged: %s", os.DevNull, logs.String())
	}
	if s, ok := w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			t.Fatalf("Sync on %s: %v", os.DevNull, err)
		}
	}
}
