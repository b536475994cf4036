package socketapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/sink/file"
	"github.com/credlet/credlet/internal/store"
)

// tmpfsDir is a directory on tmpfs when the machine has /dev/shm (as the
// pod's secrets volume is), else an ordinary temporary directory.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "credlet-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// checkFields: every value ends in -v<version>; anything else is a torn read.
func checkFields(version int, fields map[string]string) error {
	if len(fields) != 3 {
		return fmt.Errorf("v%d has %d fields, want 3", version, len(fields))
	}
	suffix := "-v" + strconv.Itoa(version)
	for k, v := range fields {
		if !strings.HasSuffix(v, suffix) {
			return fmt.Errorf("v%d field %s is from another version (ends %q)", version, k, v[max(0, len(v)-6):])
		}
	}
	return nil
}

// readDirOnce reads a version's files relative to one open of ..data: the
// way to read several files of one version. errGone: the version was
// replaced meanwhile; read again.
var errGone = errors.New("version replaced during the read")

func readDirOnce(setDir string, names ...string) (map[string]string, error) {
	d, err := os.Open(filepath.Join(setDir, "..data"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errGone
		}
		return nil, err
	}
	defer d.Close()
	out := map[string]string{}
	for _, n := range names {
		fd, err := unix.Openat(int(d.Fd()), n, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			return nil, errGone
		}
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(fd), n)
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out[n] = string(b)
	}
	return out, nil
}

type readerStats struct {
	kind     string
	reads    int
	retries  int
	versions int // distinct versions seen
	torn     []string
}

// TestNoTornReadsDuringRotations: 8 readers (4 on files, 4 on the socket)
// while 1,000 versions are committed. Every read's fields belong to one
// version and no reader sees a version go backwards.
func TestNoTornReadsDuringRotations(t *testing.T) {
	rotations := 1000
	if testing.Short() {
		rotations = 200
	}
	dir := tmpfsDir(t)
	st, err := store.New([]store.Declared{{Name: "acme"}, {Name: "acmejson"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := New(st, Options{Path: filepath.Join(shortDir(t), "r.sock")})
	if err != nil {
		t.Fatal(err)
	}
	creds := []credspec.Credential{
		{Name: "acme", Mount: "secret", Path: "acme", Format: credspec.FormatFiles},
		{Name: "acmejson", Mount: "secret", Path: "acmejson", Format: credspec.FormatJSON},
	}
	sink, err := file.New(st, creds, file.Options{Dir: dir, UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	commitBoth := func(v int) {
		commitV(t, st, "acme", v)
		commitV(t, st, "acmejson", v)
	}
	commitBoth(1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	runErr := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); runErr <- srv.Run(ctx) }()
	go func() { defer wg.Done(); runErr <- sink.Run(ctx) }()
	defer func() {
		cancel()
		wg.Wait()
		for range 2 {
			if err := <-runErr; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}()
	waitForSocket(t, srv.path, make(chan error))
	versionPath := filepath.Join(dir, "acme", "..data", "VERSION")
	jsonVersionPath := filepath.Join(dir, "acmejson", "..data", "VERSION")
	waitOnDisk := func(v int) {
		want := strconv.Itoa(v) + "\n"
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			a, _ := os.ReadFile(versionPath)
			b, _ := os.ReadFile(jsonVersionPath)
			if string(a) == want && string(b) == want {
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
		t.Fatalf("version %d never reached the files", v)
	}
	waitOnDisk(1)

	var stop atomic.Bool
	stats := make([]*readerStats, 8)
	var rg sync.WaitGroup
	reader := func(i int, kind string, read func(last int) (int, map[string]string, error)) {
		st := &readerStats{kind: kind}
		stats[i] = st
		rg.Add(1)
		go func() {
			defer rg.Done()
			last := 0
			for !stop.Load() {
				v, fields, err := read(last)
				if errors.Is(err, errGone) {
					st.retries++
					continue
				}
				if err != nil {
					st.torn = append(st.torn, "error: "+err.Error())
					return
				}
				if v == last { // long poll timed out, or If-None-Match-like repeat
					st.reads++
					continue
				}
				if err := checkFields(v, fields); err != nil {
					st.torn = append(st.torn, err.Error())
				}
				if v < last {
					st.torn = append(st.torn, fmt.Sprintf("version went back from %d to %d", last, v))
				}
				if v > last {
					st.versions++
				}
				last = v
				st.reads++
			}
		}()
	}
	// Files, format=files: three fields read through one open of ..data.
	for i := range 2 {
		reader(i, "files(..data)", func(int) (int, map[string]string, error) {
			m, err := readDirOnce(filepath.Join(dir, "acme"), "VERSION", "api_key", "api_secret", "access_token")
			if err != nil {
				return 0, nil, err
			}
			v, err := strconv.Atoi(strings.TrimSpace(m["VERSION"]))
			delete(m, "VERSION")
			return v, m, err
		})
	}
	// Files, format=json: the one file an app opens by its usual path.
	for i := 2; i < 4; i++ {
		reader(i, "file(credentials.json)", func(int) (int, map[string]string, error) {
			b, err := os.ReadFile(filepath.Join(dir, "acmejson", "credentials.json"))
			if errors.Is(err, os.ErrNotExist) {
				return 0, nil, errGone
			}
			if err != nil {
				return 0, nil, err
			}
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil {
				return 0, nil, fmt.Errorf("credentials.json %q: %w", b, err)
			}
			// The JSON file holds no version: take it from a field.
			v := 0
			if s, ok := strings.CutPrefix(m["api_key"], "FAKE-api-key-v"); ok {
				v, _ = strconv.Atoi(s)
			}
			return v, m, nil
		})
	}
	// Socket: three plain reads and one long poll.
	for i := 4; i < 8; i++ {
		c := unixClient(srv.path)
		poll := i == 7
		kind := "socket"
		if poll {
			kind = "socket(long poll)"
		}
		reader(i, kind, func(last int) (int, map[string]string, error) {
			target := "http://agent/v1/credentials/acme"
			if poll {
				target += "?wait=" + strconv.Itoa(last) + "&timeout=2s"
			}
			resp, err := c.Get(target)
			if err != nil {
				return 0, nil, err
			}
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusNotModified {
				return last, nil, nil
			}
			if resp.StatusCode != 200 {
				return 0, nil, fmt.Errorf("status %d", resp.StatusCode)
			}
			var b credBody
			if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
				return 0, nil, err
			}
			if resp.Header.Get("ETag") != `"`+strconv.Itoa(b.Version)+`"` {
				return 0, nil, fmt.Errorf("ETag %s for body version %d", resp.Header.Get("ETag"), b.Version)
			}
			return b.Version, b.Fields, nil
		})
	}

	start := time.Now()
	for v := 2; v <= rotations+1; v++ {
		commitBoth(v)
		waitOnDisk(v)
	}
	elapsed := time.Since(start)
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	rg.Wait()
	t.Logf("%d rotations in %v (%.0f/s)", rotations, elapsed, float64(rotations)/elapsed.Seconds())
	for i, s := range stats {
		t.Logf("reader %d %-22s reads %6d, versions seen %4d, retries %d", i, s.kind, s.reads, s.versions, s.retries)
		for _, msg := range s.torn[:min(len(s.torn), 5)] {
			t.Errorf("reader %d (%s): %s", i, s.kind, msg)
		}
		if len(s.torn) > 5 {
			t.Errorf("reader %d: %d more", i, len(s.torn)-5)
		}
		if s.versions < 2 {
			t.Errorf("reader %d (%s) saw %d versions: it did not read across rotations", i, s.kind, s.versions)
		}
	}
}
