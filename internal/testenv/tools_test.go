package testenv_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

func TestInCI(t *testing.T) {
	tests := []struct {
		ci   string
		want bool
	}{
		{"", false}, {"0", false}, {"false", false}, {"FALSE", false},
		{"true", true}, {"1", true}, {"yes", true},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.ci), func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			if got := testenv.InCI(); got != tt.want {
				t.Errorf("InCI() with CI=%q = %t, want %t", tt.ci, got, tt.want)
			}
		})
	}
}

// mkTools makes dir/tools-<name> holding fake executables, with mtime age.
func mkTools(t *testing.T, cache, name string, age time.Duration, bins ...string) string {
	t.Helper()
	d := filepath.Join(cache, "credlet", "tools-"+name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range bins {
		if err := os.WriteFile(filepath.Join(d, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mt := time.Now().Add(-age)
	if err := os.Chtimes(d, mt, mt); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBinaryLookup(t *testing.T) {
	cache := t.TempDir()
	old := mkTools(t, cache, "old", 2*time.Hour, "vault", "kube-apiserver", "etcd")
	newer := mkTools(t, cache, "new", time.Hour, "vault")
	explicit := mkTools(t, t.TempDir(), "explicit", 0, "etcd")
	if err := os.WriteFile(filepath.Join(explicit, "vault"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		toolsDir  string // $CREDLET_TOOLS_DIR
		bin       string
		want      string
		wantDir   string
		wantError bool
	}{
		{name: "newest cache dir holding it", bin: "vault", want: filepath.Join(newer, "vault"), wantDir: old},
		{name: "older cache dir when newer lacks it", bin: "etcd", want: filepath.Join(old, "etcd"), wantDir: old},
		{name: "in no cache dir", bin: "promtool", wantError: true, wantDir: old},
		{name: "explicit dir", toolsDir: explicit, bin: "etcd", want: filepath.Join(explicit, "etcd"), wantDir: explicit},
		{name: "explicit dir is not second-guessed", toolsDir: explicit, bin: "kube-apiserver", wantError: true, wantDir: explicit},
		{name: "not executable", toolsDir: explicit, bin: "vault", wantError: true, wantDir: explicit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_CACHE_HOME", cache)
			t.Setenv(testenv.EnvToolsDir, tt.toolsDir)
			got, err := testenv.Binary(tt.bin)
			if tt.wantError {
				if !errors.Is(err, testenv.ErrBinaryMissing) {
					t.Errorf("Binary(%s) = %q, %v; want ErrBinaryMissing", tt.bin, got, err)
				}
			} else if err != nil || got != tt.want {
				t.Errorf("Binary(%s) = %q, %v; want %q", tt.bin, got, err, tt.want)
			}
			if dir, err := testenv.ToolsDir(); err != nil || dir != tt.wantDir {
				t.Errorf("ToolsDir() = %q, %v; want %q", dir, err, tt.wantDir)
			}
		})
	}

	t.Run("nothing anywhere", func(t *testing.T) {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		t.Setenv(testenv.EnvToolsDir, "")
		if _, err := testenv.ToolsDir(); !errors.Is(err, testenv.ErrBinaryMissing) {
			t.Errorf("ToolsDir() err = %v, want ErrBinaryMissing", err)
		}
	})
}

// recordingTB records what RequireBinary asks of its test.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordingTB) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }

func TestRequireBinary(t *testing.T) {
	dir := mkTools(t, t.TempDir(), "x", 0, "vault")
	tests := []struct {
		name                string
		ci, bin             string
		wantFatal, wantSkip bool
	}{
		{name: "present", bin: "vault"},
		{name: "present under CI", ci: "true", bin: "vault"},
		{name: "missing skips", bin: "etcd", wantSkip: true},
		{name: "missing fails under CI", ci: "true", bin: "etcd", wantFatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(testenv.EnvToolsDir, dir)
			t.Setenv("CI", tt.ci)
			r := &recordingTB{}
			got := testenv.RequireBinary(r, tt.bin)
			if (r.fatal != "") != tt.wantFatal || (r.skip != "") != tt.wantSkip {
				t.Errorf("fatal %q, skip %q; want fatal %t, skip %t", r.fatal, r.skip, tt.wantFatal, tt.wantSkip)
			}
			if !tt.wantFatal && !tt.wantSkip && got != filepath.Join(dir, tt.bin) {
				t.Errorf("path = %q", got)
			}
		})
	}
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
}
