package securemem

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestNew(t *testing.T) {
	ps := unix.Getpagesize()
	tests := []struct {
		name     string
		n        int
		wantSize int // page-rounded mapping size
		wantErr  bool
	}{
		{name: "one byte", n: 1, wantSize: ps},
		{name: "exactly a page", n: ps, wantSize: ps},
		{name: "page plus one", n: ps + 1, wantSize: 2 * ps},
		{name: "one MiB", n: 1 << 20, wantSize: 1 << 20},
		{name: "zero", n: 0, wantErr: true},
		{name: "negative", n: -5, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := total(CurrentStats())
			b, err := New(tt.n)
			if tt.wantErr {
				if err == nil {
					b.Free()
					t.Fatalf("New(%d): want error", tt.n)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%d): %v", tt.n, err)
			}
			defer b.Free()
			if b.Len() != tt.n || len(b.Bytes()) != tt.n {
				t.Fatalf("Len %d, len(Bytes) %d, want %d", b.Len(), len(b.Bytes()), tt.n)
			}
			if !bytes.Equal(b.Bytes(), make([]byte, tt.n)) {
				t.Fatal("new buffer is not zeroed")
			}
			copy(b.Bytes(), "FAKE-api-key-123")
			if got := total(CurrentStats()) - before; got != int64(tt.wantSize) {
				t.Fatalf("stats grew by %d, want %d", got, tt.wantSize)
			}
			b.Free()
			if got := total(CurrentStats()) - before; got != 0 {
				t.Fatalf("after Free stats differ by %d, want 0", got)
			}
			if b.Len() != 0 || len(b.Bytes()) != 0 {
				t.Fatal("freed buffer still exposes memory")
			}
		})
	}
}

func total(s Stats) int64 { return s.Secretmem + s.Locked + s.Unlocked }

func TestFreeTwiceAndNil(t *testing.T) {
	b, err := New(64)
	if err != nil {
		t.Fatal(err)
	}
	before := total(CurrentStats())
	b.Free()
	b.Free()
	if got := before - total(CurrentStats()); got != int64(unix.Getpagesize()) {
		t.Fatalf("double Free released %d bytes, want one page", got)
	}
	var nb *Buffer
	nb.Free() // must not panic
}

func TestWipe(t *testing.T) {
	p := []byte("FAKE-api-secret-456")
	Wipe(p)
	if !bytes.Equal(p, make([]byte, len(p))) {
		t.Fatalf("Wipe left %q", p)
	}
	Wipe(nil)
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindSecretmem: "secretmem", KindLocked: "locked", KindUnlocked: "unlocked"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k.String(), want)
		}
	}
}

// mapping returns the /proc/self/smaps block describing the mapping at addr.
func mapping(t *testing.T, addr uintptr) (header string, fields map[string]string) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	fields = map[string]string{}
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := rangeOf(line); ok {
			if in {
				break
			}
			in = addr >= lo && addr < hi
			if in {
				header = line
			}
			continue
		}
		if in {
			k, v, _ := strings.Cut(line, ":")
			fields[k] = strings.TrimSpace(v)
		}
	}
	if header == "" {
		t.Fatalf("no mapping at %#x in smaps", addr)
	}
	return header, fields
}

func rangeOf(line string) (lo, hi uintptr, ok bool) {
	r, _, found := strings.Cut(line, " ")
	a, b, dash := strings.Cut(r, "-")
	if !found || !dash {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 16, 64)
	y, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uintptr(x), uintptr(y), true
}

// TestMappingProtection checks what the kernel says about each buffer's
// pages: locked mappings are locked and excluded from core dumps; secretmem
// mappings come from the secretmem file.
func TestMappingProtection(t *testing.T) {
	b, err := New(100)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	copy(b.Bytes(), "FAKE-api-key-123")
	header, f := mapping(t, uintptr(unsafe.Pointer(&b.Bytes()[0])))
	t.Logf("kind %s: %s VmFlags=%s Locked=%s", b.Kind(), header, f["VmFlags"], f["Locked"])
	flags := " " + f["VmFlags"] + " "
	switch b.Kind() {
	case KindSecretmem:
		if !strings.Contains(header, "secretmem") {
			t.Errorf("secretmem buffer mapping %q is not the secretmem file", header)
		}
	case KindLocked:
		if !strings.Contains(flags, " lo ") {
			t.Errorf("locked buffer lacks VmFlags lo: %q", flags)
		}
		if !strings.Contains(flags, " dd ") {
			t.Errorf("buffer lacks VmFlags dd (MADV_DONTDUMP): %q", flags)
		}
	case KindUnlocked:
		if !strings.Contains(flags, " dd ") {
			t.Errorf("buffer lacks VmFlags dd (MADV_DONTDUMP): %q", flags)
		}
	}
}

// readProcMem reads n bytes at addr from /proc/self/mem, as root could from
// another process.
func readProcMem(addr uintptr, n int) ([]byte, error) {
	f, err := os.Open("/proc/self/mem")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := make([]byte, n)
	_, err = f.ReadAt(p, int64(addr))
	return p, err
}

// TestSecretmemHiddenFromProcMem: the point of memfd_secret is that even a
// root reader of /proc/PID/mem cannot see the pages. The ordinary heap slice
// is the positive control proving the reader works.
func TestSecretmemHiddenFromProcMem(t *testing.T) {
	secret := []byte("FAKE-secretmem-value-789")
	control := append([]byte(nil), secret...)
	got, err := readProcMem(uintptr(unsafe.Pointer(&control[0])), len(control))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("control read of heap memory failed: %v %q", err, got)
	}
	b, err := New(len(secret))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	if b.Kind() != KindSecretmem {
		t.Skipf("memfd_secret not available here (kind %s)", b.Kind())
	}
	copy(b.Bytes(), secret)
	got, err = readProcMem(uintptr(unsafe.Pointer(&b.Bytes()[0])), len(secret))
	if err == nil && bytes.Equal(got, secret) {
		t.Fatal("secretmem buffer is readable through /proc/self/mem")
	}
	t.Logf("read of secretmem through /proc/self/mem: err=%v", err)
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

const helperEnv = "CREDLET_SECUREMEM_HELPER"

// runHelper runs process-wide checks in a child, so they don't change the
// test process itself. It prints "key=value" lines the parent asserts on.
func runHelper(mode string) int {
	switch mode {
	case "harden", "harden-lockall":
		d, err := Dumpable()
		fmt.Printf("dumpable_before=%v err=%v\n", d, err)
		r := Harden(mode == "harden-lockall")
		d, err = Dumpable()
		var core unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_CORE, &core)
		fmt.Printf("dumpable_after=%v err=%v\n", d, err)
		fmt.Printf("report_nondumpable=%v report_nocore=%v report_lockedall=%v report_secretmem=%v\n",
			r.NonDumpable, r.NoCore, r.LockedAll, r.Secretmem)
		fmt.Printf("core_cur=%d core_max=%d\n", core.Cur, core.Max)
		fmt.Printf("vmlck_kb=%d vmrss_kb=%d\n", statusKB("VmLck"), statusKB("VmRSS"))
	case "disabled":
		DisableSecretmem()
		b, err := New(10)
		if err != nil {
			fmt.Printf("error=%v\n", err)
			return 1
		}
		fmt.Printf("kind=%s\n", b.Kind())
		st := CurrentStats()
		fmt.Printf("secretmem_bytes=%d\n", st.Secretmem)
		b.Free()
	case "unlocked":
		// An unprivileged process with no memlock allowance: buffers
		// still work, and are reported as unlocked rather than hidden.
		_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{})
		b, err := New(10)
		if err != nil {
			fmt.Printf("error=%v\n", err)
			return 1
		}
		copy(b.Bytes(), "FAKE")
		fmt.Printf("kind=%s\n", b.Kind())
		st := CurrentStats()
		fmt.Printf("unlocked_bytes=%d locked_bytes=%d secretmem_bytes=%d\n", st.Unlocked, st.Locked, st.Secretmem)
		r := Harden(true)
		fmt.Printf("report_lockedall=%v lockall_err_set=%v\n", r.LockedAll, r.LockAllErr != nil)
		b.Free()
	default:
		fmt.Printf("unknown helper mode %q\n", mode)
		return 2
	}
	return 0
}

func statusKB(key string) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

func TestWriter(t *testing.T) {
	b, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	w := b.Writer(10)
	if _, err := w.WriteString("FAKE-"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if string(w.Bytes()) != "FAKE-12345" || &w.Bytes()[0] != &b.Bytes()[0] {
		t.Fatalf("wrote %q, not into the buffer", w.Bytes())
	}
	if n, err := w.Write([]byte("x")); n != 0 || !errors.Is(err, ErrFull) || !errors.Is(w.Err(), ErrFull) {
		t.Fatalf("past the limit: %d, %v", n, err)
	}
	if _, err := w.WriteString(""); !errors.Is(err, ErrFull) {
		t.Fatal("a failed writer must stay failed")
	}
	if len(w.Bytes()) != 10 {
		t.Fatalf("a failed write changed the content: %q", w.Bytes())
	}
	if got := b.Writer(100); cap(got.Bytes()) != 16 {
		t.Fatalf("a limit past Len gives capacity %d, want 16", cap(got.Bytes()))
	}
}
