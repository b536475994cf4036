package file

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/credlet/credlet/internal/testlog"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credlet/credlet/internal/clock"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/store"
)

type syncBuffer = testlog.Buffer

type env struct {
	st    *store.Store
	sink  *Sink
	dir   string
	logs  *syncBuffer
	m     *metrics.Agent
	clock *clock.Fake
}

func cred(t testing.TB, spec string) credspec.Credential {
	t.Helper()
	c, err := credspec.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t testing.TB, opts Options, specs ...string) *env {
	t.Helper()
	var creds []credspec.Credential
	var decl []store.Declared
	for _, sp := range specs {
		c := cred(t, sp)
		creds = append(creds, c)
		decl = append(decl, store.Declared{Name: c.Name, Optional: c.Optional})
	}
	st, err := store.New(decl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e := &env{st: st, dir: filepath.Join(t.TempDir(), "secrets"), logs: &syncBuffer{}, m: metrics.New(),
		clock: clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))}
	opts.Dir = e.dir
	opts.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Metrics = e.m
	if opts.Clock == nil {
		opts.Clock = e.clock
	}
	if opts.UID == 0 && opts.GID == 0 {
		opts.UID, opts.GID = -1, -1
	}
	e.sink, err = New(st, creds, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), "FAKE") {
			t.Errorf("a secret value reached the logs:\n%s", e.logs.String())
		}
	})
	return e
}

// run starts Run and returns a stop function that checks it returned nil.
func (e *env) run(t testing.TB) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.sink.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil on cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func commitFields(t testing.TB, st *store.Store, name string, v int, kv ...string) {
	t.Helper()
	f := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = []byte(kv[i+1])
	}
	if err := st.Commit(name, store.Meta{Version: v, FetchedAt: time.Unix(int64(v), 0)}, f); err != nil {
		t.Fatal(err)
	}
}

// waitVersion waits until the sink has finished writing version v of name
// and checks ..data/VERSION says so.
func (e *env) waitVersion(t testing.TB, name string, v int) {
	t.Helper()
	waitFor(t, func() bool { return e.sink.writtenVersion(name) == v })
	b, err := os.ReadFile(filepath.Join(e.dir, name, dataLink, versionFile))
	if err != nil || string(b) != strconv.Itoa(v)+"\n" {
		t.Fatalf("%s: sink wrote version %d but ..data/VERSION is %q, %v", name, v, b, err)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func versionDirs(t testing.TB, setDir string) []string {
	var out []string
	for _, n := range listDir(t, setDir) {
		if strings.HasPrefix(n, "..") && n != dataLink {
			out = append(out, n)
		}
	}
	return out
}

func gaugeValue(t testing.TB, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func TestFormats(t *testing.T) {
	fields := []string{"api_key", "FAKE-api-key-123", "api-secret", "FAKE'sec\"ret\nline2", "9lives", "FAKE-9"}
	tests := []struct {
		name      string
		spec      string
		wantLinks []string
		check     func(t *testing.T, setDir string)
	}{
		{
			name: "files", spec: "acme=secret/acme", wantLinks: []string{"9lives", "api-secret", "api_key"},
			check: func(t *testing.T, setDir string) {
				for i := 0; i < len(fields); i += 2 {
					b, err := os.ReadFile(filepath.Join(setDir, fields[i]))
					if err != nil || string(b) != fields[i+1] {
						t.Errorf("%s = %q, %v; want %q", fields[i], b, err, fields[i+1])
					}
				}
			},
		},
		{
			name: "json", spec: "acme=secret/acme;format=json", wantLinks: []string{jsonFile},
			check: func(t *testing.T, setDir string) {
				b, err := os.ReadFile(filepath.Join(setDir, jsonFile))
				if err != nil {
					t.Fatal(err)
				}
				var got map[string]string
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatalf("%s: %v", b, err)
				}
				for i := 0; i < len(fields); i += 2 {
					if got[fields[i]] != fields[i+1] {
						t.Errorf("json %s = %q, want %q", fields[i], got[fields[i]], fields[i+1])
					}
				}
			},
		},
		{
			name: "env", spec: "acme=secret/acme;format=env", wantLinks: []string{envFile},
			check: func(t *testing.T, setDir string) {
				b, err := os.ReadFile(filepath.Join(setDir, envFile))
				if err != nil {
					t.Fatal(err)
				}
				want := "_9LIVES='FAKE-9'\nAPI_SECRET='FAKE'\\''sec\"ret\nline2'\nAPI_KEY='FAKE-api-key-123'\n"
				if string(b) != want {
					t.Fatalf("env file:\n%s\nwant:\n%s", b, want)
				}
				// A POSIX shell reads the values back exactly.
				sh, err := exec.LookPath("sh")
				if err != nil {
					t.Skip("no sh to load the file with")
				}
				out, err := exec.Command(sh, "-c", `set -a; . "$1"; printf '%s|%s|%s' "$API_KEY" "$API_SECRET" "$_9LIVES"`, "sh",
					filepath.Join(setDir, envFile)).Output()
				if err != nil {
					t.Fatal(err)
				}
				if string(out) != "FAKE-api-key-123|FAKE'sec\"ret\nline2|FAKE-9" {
					t.Fatalf("sh loaded %q", out)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{}, tt.spec)
			commitFields(t, e.st, "acme", 3, fields...)
			e.run(t)
			e.waitVersion(t, "acme", 3)
			setDir := filepath.Join(e.dir, "acme")
			vd := versionDirs(t, setDir)
			if len(vd) != 1 || !strings.HasPrefix(vd[0], "..2025_03_01_12_00_00.") {
				t.Fatalf("version dirs %v, want one named from the clock", vd)
			}
			if target, _ := os.Readlink(filepath.Join(setDir, dataLink)); target != vd[0] {
				t.Fatalf("..data -> %q, want %q", target, vd[0])
			}
			for _, l := range tt.wantLinks {
				if target, err := os.Readlink(filepath.Join(setDir, l)); err != nil || target != dataLink+"/"+l {
					t.Errorf("link %s -> %q, %v", l, target, err)
				}
			}
			want := append([]string{dataLink, vd[0]}, tt.wantLinks...)
			sort.Strings(want)
			if got := listDir(t, setDir); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("set dir holds %v, want %v", got, want)
			}
			for _, n := range listDir(t, filepath.Join(setDir, vd[0])) {
				fi, err := os.Stat(filepath.Join(setDir, vd[0], n))
				if err != nil || fi.Mode() != 0o400 {
					t.Errorf("%s mode %v, %v; want -r--------", n, fi.Mode(), err)
				}
			}
			if fi, _ := os.Stat(filepath.Join(setDir, vd[0])); fi.Mode().Perm() != 0o500 {
				t.Errorf("version dir mode %v, want 0500", fi.Mode().Perm())
			}
			tt.check(t, setDir)
		})
	}
}

func TestRotation(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	commitFields(t, e.st, "acme", 1, "a", "FAKE-a1", "b", "FAKE-b1")
	e.run(t)
	e.waitVersion(t, "acme", 1)
	setDir := filepath.Join(e.dir, "acme")
	first := versionDirs(t, setDir)
	commitFields(t, e.st, "acme", 2, "a", "FAKE-a2", "c", "FAKE-c2")
	e.waitVersion(t, "acme", 2)
	waitFor(t, func() bool { return len(versionDirs(t, setDir)) == 1 && len(listDir(t, setDir)) == 4 })
	vd := versionDirs(t, setDir)
	if len(vd) != 1 || vd[0] == first[0] {
		t.Fatalf("version dirs after rotation %v (first %v): want only the new one", vd, first)
	}
	if got := strings.Join(listDir(t, setDir), " "); got != vd[0]+" "+dataLink+" a c" {
		t.Fatalf("set dir %q: the link to the dropped field b must go, c must appear", got)
	}
	if b, _ := os.ReadFile(filepath.Join(setDir, "a")); string(b) != "FAKE-a2" {
		t.Fatalf("a = %q after rotation", b)
	}
}

// TestOwner: files and version directory belong to the configured user.
func TestOwner(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("chown to another user needs root (CI runs as root)")
		}
		t.Skip("needs root")
	}
	e := newEnv(t, Options{UID: 65534, GID: 65533, Mode: 0o440}, "acme=secret/acme")
	commitFields(t, e.st, "acme", 1, "api_key", "FAKE-api-key-123")
	e.run(t)
	e.waitVersion(t, "acme", 1)
	vd := filepath.Join(e.dir, "acme", versionDirs(t, filepath.Join(e.dir, "acme"))[0])
	for _, p := range []string{vd, filepath.Join(vd, "api_key"), filepath.Join(vd, versionFile)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65534 || st.Gid != 65533 {
			t.Errorf("%s owned by %d:%d, want 65534:65533", p, st.Uid, st.Gid)
		}
		want := os.FileMode(0o440)
		if fi.IsDir() {
			want = 0o550
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	// A rotation can still remove the old directory it no longer owns.
	commitFields(t, e.st, "acme", 2, "api_key", "FAKE-api-key-456")
	e.waitVersion(t, "acme", 2)
	waitFor(t, func() bool { return len(versionDirs(t, filepath.Join(e.dir, "acme"))) == 1 })
}

func TestCleanStaleAtStart(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	setDir := filepath.Join(e.dir, "acme")
	cur := filepath.Join(setDir, "..2020_01_01_00_00_00.111")
	crashed := filepath.Join(setDir, "..2020_01_01_00_00_01.222")
	for _, d := range []string{cur, crashed} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "api_key"), []byte("FAKE-old"), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o500); err != nil { // as the sink leaves them
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{dataLink: filepath.Base(cur), dataTmp: filepath.Base(crashed), "api_key": "..data/api_key"} {
		if err := os.Symlink(target, filepath.Join(setDir, link)); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing committed yet: Run only cleans.
	stop := e.run(t)
	waitFor(t, func() bool { return len(listDir(t, setDir)) == 3 })
	stop()
	got := strings.Join(listDir(t, setDir), " ")
	if got != filepath.Base(cur)+" "+dataLink+" api_key" {
		t.Fatalf("after start the set dir holds %q: want the crashed dir and ..data_tmp gone, the served version kept", got)
	}
}

func TestBadVersionKeepsLastGood(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		bad     []string
		wantErr string
	}{
		{name: "reserved name", spec: "acme=secret/acme", bad: []string{"VERSION", "FAKE-v"}, wantErr: "VERSION"},
		{name: "slash in name", spec: "acme=secret/acme", bad: []string{"a/b", "FAKE-v"}, wantErr: "format=json"},
		{name: "env collision", spec: "acme=secret/acme;format=env", bad: []string{"a-b", "FAKE-1", "a_b", "FAKE-2"}, wantErr: "both become A_B"},
		{name: "env NUL", spec: "acme=secret/acme;format=env", bad: []string{"k", "FAKE\x00"}, wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{}, tt.spec)
			commitFields(t, e.st, "acme", 1, "k", "FAKE-good")
			e.run(t)
			e.waitVersion(t, "acme", 1)
			commitFields(t, e.st, "acme", 2, tt.bad...)
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) && !strings.Contains(e.logs.String(), tt.wantErr) {
				time.Sleep(5 * time.Millisecond)
			}
			if !strings.Contains(e.logs.String(), tt.wantErr) {
				t.Fatalf("no error naming %q in logs:\n%s", tt.wantErr, e.logs.String())
			}
			e.waitVersion(t, "acme", 1) // still the last good one
			if vd := versionDirs(t, filepath.Join(e.dir, "acme")); len(vd) != 1 {
				t.Fatalf("failed write left %v", vd)
			}
			// The failure is retried on the clock; a good version replaces it.
			commitFields(t, e.st, "acme", 3, "k", "FAKE-good3")
			e.waitVersion(t, "acme", 3)
		})
	}
}

func TestRetryAfterFailure(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(e.dir, "acme")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil { // a file where the set dir goes
		t.Fatal(err)
	}
	commitFields(t, e.st, "acme", 1, "k", "FAKE-1")
	armed := e.clock.TimerCreated()
	e.run(t)
	select {
	case <-armed:
	case <-time.After(5 * time.Second):
		t.Fatal("no retry timer after a failed write")
	}
	if d, ok := e.clock.NextDeadline(); !ok || d.Sub(e.clock.Now()) != retryMin {
		t.Fatalf("retry due in %v, want %v", d.Sub(e.clock.Now()), retryMin)
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(retryMin)
	e.waitVersion(t, "acme", 1)
}

// mapsOf returns the smaps entries of this process mapping files under dir.
func mapsOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	cur := ""
	for sc.Scan() {
		line := sc.Text()
		if fs := strings.Fields(line); len(fs) >= 6 && strings.Contains(fs[0], "-") && strings.HasPrefix(fs[5], dir) {
			cur = strings.Join(fs[5:], " ")
			continue
		}
		if strings.Contains(line, "-") && len(strings.Fields(line)) >= 5 && !strings.Contains(line, ":") {
			cur = ""
		}
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok && cur != "" {
			out[cur] = strings.TrimSpace(v)
			cur = ""
		}
	}
	return out
}

func TestFilesKeptLocked(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	commitFields(t, e.st, "acme", 1, "a", "FAKE-a1", "b", "FAKE-b1")
	stop := e.run(t)
	e.waitVersion(t, "acme", 1)
	maps := mapsOf(t, e.dir)
	if len(maps) != 2 {
		t.Fatalf("mapped files %v, want a and b", maps)
	}
	for p, flags := range maps {
		if !strings.Contains(" "+flags+" ", " lo ") || !strings.Contains(" "+flags+" ", " dd ") {
			t.Errorf("%s VmFlags %q: want locked (lo) and not dumped (dd)", p, flags)
		}
		if strings.HasSuffix(p, versionFile) {
			t.Errorf("VERSION holds no secret and need not be locked")
		}
	}
	page := float64(os.Getpagesize())
	if got := gaugeValue(t, e.m.MemoryLocked.WithLabelValues(metrics.ScopeFiles)); got != 2*page {
		t.Errorf("credlet_memory_locked{scope=files} = %v, want %v", got, 2*page)
	}
	commitFields(t, e.st, "acme", 2, "a", "FAKE-a2")
	e.waitVersion(t, "acme", 2)
	waitFor(t, func() bool { return len(mapsOf(t, e.dir)) == 1 })
	stop()
	if maps := mapsOf(t, e.dir); len(maps) != 0 {
		t.Fatalf("after Run returned still mapped: %v", maps)
	}
	if got := gaugeValue(t, e.m.MemoryLocked.WithLabelValues(metrics.ScopeFiles)); got != 0 {
		t.Errorf("files gauge %v after stop", got)
	}
}

func TestWriteAll(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme", "later=secret/later", "opt=secret/opt;optional")
	commitFields(t, e.st, "acme", 4, "k", "FAKE-4")
	err := e.sink.WriteAll()
	if !errors.Is(err, store.ErrNotReady) || !strings.Contains(err.Error(), `"later"`) || strings.Contains(err.Error(), `"opt"`) {
		t.Fatalf("WriteAll = %v: want ErrNotReady naming only the required set", err)
	}
	e.waitVersion(t, "acme", 4)
	if maps := mapsOf(t, e.dir); len(maps) != 0 {
		t.Fatalf("WriteAll left mappings: %v", maps)
	}
	commitFields(t, e.st, "later", 1, "k", "FAKE-1")
	if err := e.sink.WriteAll(); err != nil {
		t.Fatalf("WriteAll with every required set: %v", err)
	}
	e.waitVersion(t, "later", 1)
}

func TestNewErrors(t *testing.T) {
	st, _ := store.New([]store.Declared{{Name: "acme"}})
	tests := []struct {
		name    string
		specs   []string
		opts    Options
		wantErr string
	}{
		{name: "no dir", specs: []string{"acme=secret/a"}, opts: Options{}, wantErr: "empty"},
		{name: "exec bit", specs: []string{"acme=secret/a"}, opts: Options{Dir: "/x", Mode: 0o500}, wantErr: "read/write"},
		{name: "owner cannot read", specs: []string{"acme=secret/a"}, opts: Options{Dir: "/x", Mode: 0o040}, wantErr: "owner"},
		{name: "bad owner", specs: []string{"acme=secret/a"}, opts: Options{Dir: "/x", UID: -2}, wantErr: "-1"},
		{name: "undeclared", specs: []string{"other=secret/a"}, opts: Options{Dir: "/x"}, wantErr: "not declared"},
		{name: "twice", specs: []string{"acme=secret/a", "acme=secret/b"}, opts: Options{Dir: "/x"}, wantErr: "twice"},
		{name: "reserved field", specs: []string{"acme=secret/a;fields=VERSION"}, opts: Options{Dir: "/x"}, wantErr: "VERSION"},
		{name: "reserved field ok as json", specs: []string{"acme=secret/a;fields=VERSION;format=json"}, opts: Options{Dir: "/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var creds []credspec.Credential
			for _, s := range tt.specs {
				creds = append(creds, cred(t, s))
			}
			_, err := New(st, creds, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestEnvKey(t *testing.T) {
	for in, want := range map[string]string{
		"api_key": "API_KEY", "api-secret": "API_SECRET", "9lives": "_9LIVES", "a.b.c": "A_B_C", "": "_", "clé": "CL_",
	} {
		if got := EnvKey(in); got != want {
			t.Errorf("EnvKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWrittenSignalsAfterFiles: a Written signal means the new version's
// files are readable, so --notify never reaches a file-reading app before
// its files do.
func TestWrittenSignalsAfterFiles(t *testing.T) {
	e := newEnv(t, Options{}, "acme=secret/acme")
	commitFields(t, e.st, "acme", 1, "a", "FAKE-a1")
	e.run(t)
	for v := 2; v <= 5; v++ {
		select {
		case <-e.sink.Written():
		case <-time.After(10 * time.Second):
			t.Fatalf("no Written signal for version %d", v-1)
		}
		got := e.sink.Versions()["acme"]
		b, err := os.ReadFile(filepath.Join(e.dir, "acme", "a"))
		if err != nil || string(b) != fmt.Sprintf("FAKE-a%d", got) {
			t.Fatalf("after Written, Versions says %d but the file holds %q (%v)", got, b, err)
		}
		commitFields(t, e.st, "acme", v, "a", fmt.Sprintf("FAKE-a%d", v))
	}
}
