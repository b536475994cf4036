package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func fields(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

// versioned returns fields whose values embed the version, so a reader can
// tell whether everything it saw came from one version.
func versioned(v int) map[string][]byte {
	s := strconv.Itoa(v)
	return fields("api_key", "FAKE-key-v"+s, "api_secret", "FAKE-secret-v"+s, "access_token", "FAKE-token-v"+s)
}

func newStore(t *testing.T, decl ...Declared) *Store {
	t.Helper()
	if len(decl) == 0 {
		decl = []Declared{{Name: "acme"}}
	}
	s, err := New(decl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func commit(t *testing.T, s *Store, name string, v int) {
	t.Helper()
	if err := s.Commit(name, Meta{Version: v, FetchedAt: t0.Add(time.Duration(v) * time.Second)}, versioned(v)); err != nil {
		t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		decl    []Declared
		want    []string
		wantErr bool
	}{
		{name: "empty", decl: nil, want: nil},
		{name: "order kept", decl: []Declared{{Name: "b"}, {Name: "a", Optional: true}}, want: []string{"b", "a"}},
		{name: "duplicate", decl: []Declared{{Name: "a"}, {Name: "a"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.decl)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if fmt.Sprint(s.Names()) != fmt.Sprint(tt.want) {
				t.Fatalf("Names() = %v, want %v", s.Names(), tt.want)
			}
		})
	}
}

func TestCommitAcquire(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string][]byte
	}{
		{name: "three fields", fields: fields("api_key", "FAKE-api-key-123", "api_secret", "FAKE-secret", "z", "")},
		{name: "no fields", fields: map[string][]byte{}},
		{name: "binary value", fields: map[string][]byte{"k": {0, 1, 2, 0xff}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			want := map[string]string{}
			originals := map[string][]byte{}
			for k, v := range tt.fields {
				want[k] = string(v)
				originals[k] = v
			}
			meta := Meta{Version: 7, CreatedAt: t0, FetchedAt: t0.Add(time.Second), ExpiresAt: t0.Add(time.Hour)}
			if err := s.Commit("acme", meta, tt.fields); err != nil {
				t.Fatal(err)
			}
			for k, v := range originals {
				if !bytes.Equal(v, make([]byte, len(v))) {
					t.Errorf("caller's slice for %q not wiped: %q", k, v)
				}
			}
			set, err := s.Acquire("acme")
			if err != nil {
				t.Fatal(err)
			}
			defer set.Release()
			if set.Name() != "acme" || set.Version() != 7 || !set.CreatedAt().Equal(t0) ||
				!set.FetchedAt().Equal(t0.Add(time.Second)) || !set.ExpiresAt().Equal(t0.Add(time.Hour)) {
				t.Fatalf("metadata %s v%d %v %v %v", set.Name(), set.Version(), set.CreatedAt(), set.FetchedAt(), set.ExpiresAt())
			}
			got := map[string]string{}
			var order []string
			set.Each(func(name string, value []byte) {
				got[name] = string(value)
				order = append(order, name)
			})
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Each saw %q, want %q", got, want)
			}
			if fmt.Sprint(order) != fmt.Sprint(set.Fields()) || set.Len() != len(want) {
				t.Fatalf("Each order %v, Fields %v, Len %d", order, set.Fields(), set.Len())
			}
			for k, v := range want {
				f, ok := set.Field(k)
				if !ok || string(f) != v {
					t.Errorf("Field(%q) = %q, %v; want %q", k, f, ok, v)
				}
				if cap(f) != len(f) {
					t.Errorf("Field(%q) has spare capacity %d: an append would write into the next value", k, cap(f)-len(f))
				}
			}
			if _, ok := set.Field("missing"); ok {
				t.Error("Field(missing) found")
			}
			// Fields returns a copy: changing it must not break lookups.
			if names := set.Fields(); len(names) > 0 {
				names[0] = "zzzz"
				if _, ok := set.Field(set.Fields()[0]); !ok {
					t.Error("modifying Fields() result changed the set")
				}
			}
		})
	}
}

func TestAcquireErrors(t *testing.T) {
	s := newStore(t)
	if _, err := s.Acquire("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Acquire(unknown) = %v, want ErrUnknown", err)
	}
	if _, err := s.Acquire("acme"); !errors.Is(err, ErrNotReady) {
		t.Errorf("Acquire before commit = %v, want ErrNotReady", err)
	}
	if _, err := s.AcquirePrevious("acme"); !errors.Is(err, ErrNotReady) {
		t.Errorf("AcquirePrevious before commit = %v, want ErrNotReady", err)
	}
	if _, err := s.AcquirePrevious("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("AcquirePrevious(unknown) = %v, want ErrUnknown", err)
	}
	f := fields("k", "FAKE-v")
	v := f["k"]
	if err := s.Commit("nope", Meta{Version: 1}, f); !errors.Is(err, ErrUnknown) {
		t.Errorf("Commit(unknown) = %v, want ErrUnknown", err)
	}
	if !bytes.Equal(v, make([]byte, len(v))) {
		t.Error("Commit(unknown) did not wipe the caller's values")
	}
	if _, err := s.Wait(context.Background(), "nope", 0); !errors.Is(err, ErrUnknown) {
		t.Errorf("Wait(unknown) = %v, want ErrUnknown", err)
	}
}

func TestAcquirePrevious(t *testing.T) {
	s := newStore(t)
	commit(t, s, "acme", 1)
	if _, err := s.AcquirePrevious("acme"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("previous after one commit: %v, want ErrNotReady", err)
	}
	commit(t, s, "acme", 2)
	commit(t, s, "acme", 3)
	p, err := s.AcquirePrevious("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	if v, _ := p.Field("api_key"); p.Version() != 2 || string(v) != "FAKE-key-v2" {
		t.Fatalf("previous = v%d %q, want v2", p.Version(), v)
	}
}

func liveBytes() int64 {
	st := securemem.CurrentStats()
	return st.Secretmem + st.Locked + st.Unlocked
}

// TestRefcount: a reader's Set stays valid after it has left both the
// current and the previous slot, and its memory is freed at Release.
func TestRefcount(t *testing.T) {
	s := newStore(t)
	base := liveBytes()
	commit(t, s, "acme", 1)
	held, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, "acme", 2)
	commit(t, s, "acme", 3) // v1 leaves the previous slot: only the reader holds it
	if v, ok := held.Field("api_secret"); !ok || string(v) != "FAKE-secret-v1" {
		t.Fatalf("held v1 reads %q, %v", v, ok)
	}
	perSet := (liveBytes() - base) / 3 // v1 (held), v2 (previous), v3 (current)
	if perSet <= 0 {
		t.Fatalf("live bytes did not grow: %d", liveBytes()-base)
	}
	held.Release()
	if got := liveBytes() - base; got != 2*perSet {
		t.Fatalf("after Release live bytes %d, want %d (v1 freed)", got, 2*perSet)
	}
	commit(t, s, "acme", 4) // v2 is released by the store itself: nobody holds it
	if got := liveBytes() - base; got != 2*perSet {
		t.Fatalf("after v4 live bytes %d, want %d", got, 2*perSet)
	}
	s.Close()
	if got := liveBytes() - base; got != 0 {
		t.Fatalf("after Close live bytes %d, want 0", got)
	}
	if _, err := s.Acquire("acme"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Acquire after Close = %v, want ErrNotReady", err)
	}
}

// TestCloseWithReader: a reader holding a Set across Close keeps reading it.
func TestCloseWithReader(t *testing.T) {
	s := newStore(t)
	base := liveBytes()
	commit(t, s, "acme", 1)
	held, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v, _ := held.Field("api_key"); string(v) != "FAKE-key-v1" {
		t.Fatalf("after Close held set reads %q", v)
	}
	if liveBytes() == base {
		t.Fatal("held set freed before Release")
	}
	held.Release()
	if liveBytes() != base {
		t.Fatal("set not freed after last Release")
	}
}

func TestWait(t *testing.T) {
	t.Run("returns at once when the version differs", func(t *testing.T) {
		s := newStore(t)
		commit(t, s, "acme", 3)
		set, err := s.Wait(context.Background(), "acme", 2)
		if err != nil {
			t.Fatal(err)
		}
		defer set.Release()
		if set.Version() != 3 {
			t.Fatalf("version %d, want 3", set.Version())
		}
	})
	t.Run("blocks until a commit", func(t *testing.T) {
		s := newStore(t)
		commit(t, s, "acme", 1)
		got := make(chan int, 1)
		go func() {
			set, err := s.Wait(context.Background(), "acme", 1)
			if err != nil {
				got <- -1
				return
			}
			got <- set.Version()
			set.Release()
		}()
		select {
		case v := <-got:
			t.Fatalf("Wait returned v%d before a commit", v)
		case <-time.After(50 * time.Millisecond):
		}
		commit(t, s, "acme", 2)
		select {
		case v := <-got:
			if v != 2 {
				t.Fatalf("Wait returned %d, want 2", v)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not wake on commit")
		}
	})
	t.Run("waits for the first version", func(t *testing.T) {
		s := newStore(t)
		got := make(chan int, 1)
		go func() {
			set, err := s.Wait(context.Background(), "acme", 0)
			if err != nil {
				got <- -1
				return
			}
			got <- set.Version()
			set.Release()
		}()
		commit(t, s, "acme", 1)
		if v := <-got; v != 1 {
			t.Fatalf("got %d, want 1", v)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		s := newStore(t)
		commit(t, s, "acme", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		set, err := s.Wait(ctx, "acme", 1)
		if !errors.Is(err, context.DeadlineExceeded) || set != nil {
			t.Fatalf("Wait = %v, %v; want nil, DeadlineExceeded", set, err)
		}
	})
}

func TestSubscribeCoalescing(t *testing.T) {
	s := newStore(t, Declared{Name: "a"}, Declared{Name: "b"})
	sub := s.Subscribe()
	defer sub.Close()
	closed := s.Subscribe()
	closed.Close()
	closed.Close() // twice is fine

	for v := 1; v <= 10; v++ {
		commit(t, s, "a", v)
		commit(t, s, "b", v)
	}
	select {
	case <-sub.Updated():
	default:
		t.Fatal("no signal after 20 commits")
	}
	select {
	case <-sub.Updated():
		t.Fatal("20 commits signalled more than once: not coalesced")
	default:
	}
	select {
	case <-closed.Updated():
		t.Fatal("closed subscription was signalled")
	default:
	}
	commit(t, s, "a", 11)
	select {
	case <-sub.Updated():
	default:
		t.Fatal("no signal for a commit after the first signal was taken")
	}
}

func TestStatusReady(t *testing.T) {
	s := newStore(t, Declared{Name: "req"}, Declared{Name: "opt", Optional: true})
	if s.Ready() {
		t.Fatal("ready before the required set was committed")
	}
	if !s.Optional("opt") || s.Optional("req") || s.Optional("nope") {
		t.Fatal("Optional wrong")
	}
	s.MarkError("req", "vault: connection refused")
	st := s.Status()
	if len(st) != 2 || st[0].Name != "req" || st[0].Version != 0 || st[0].LastError != "vault: connection refused" {
		t.Fatalf("status before commit: %+v", st)
	}
	commit(t, s, "req", 4)
	if !s.Ready() {
		t.Fatal("not ready with the required set committed and the optional one missing")
	}
	st = s.Status()
	if st[0].Version != 4 || st[0].LastError != "" || !st[0].CheckedAt.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("after commit: %+v (commit clears the error and records the check)", st[0])
	}
	if !st[1].Optional || st[1].Version != 0 {
		t.Fatalf("optional status: %+v", st[1])
	}
	s.MarkError("req", "fetch failed")
	s.MarkChecked("nope", t0) // unknown names are ignored
	if st := s.Status(); st[0].LastError != "fetch failed" || st[0].Version != 4 {
		t.Fatalf("after MarkError: %+v (the served version stays)", st[0])
	}
	s.MarkChecked("req", t0.Add(time.Hour))
	if st := s.Status(); st[0].LastError != "" || !st[0].CheckedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after MarkChecked: %+v", st[0])
	}
}

// TestConcurrentAcquireCommit runs readers against a committing writer
// under -race: every read sees one version's fields, versions never go
// backwards, and every buffer is freed at the end.
func TestConcurrentAcquireCommit(t *testing.T) {
	s := newStore(t)
	base := liveBytes()
	commit(t, s, "acme", 1)
	const versions = 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 16)
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				var set *Set
				var err error
				switch r % 3 {
				case 0:
					set, err = s.Acquire("acme")
				case 1:
					set, err = s.AcquirePrevious("acme")
				default:
					set, err = s.Wait(context.Background(), "acme", last)
				}
				if err != nil {
					continue // previous not there yet
				}
				v := set.Version()
				want := "-v" + strconv.Itoa(v)
				set.Each(func(name string, value []byte) {
					if !strings.HasSuffix(string(value), want) {
						errc <- fmt.Errorf("reader %d: v%d field %s = %q: torn", r, v, name, value)
					}
				})
				set.Release()
				if r%3 != 1 && v < last {
					errc <- fmt.Errorf("reader %d: version went back from %d to %d", r, last, v)
				}
				last = max(last, v)
			}
		}()
	}
	for v := 2; v <= versions; v++ {
		commit(t, s, "acme", v)
	}
	close(stop)
	commit(t, s, "acme", versions+1) // wake any reader still in Wait
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	s.Close()
	if got := liveBytes() - base; got != 0 {
		t.Fatalf("%d bytes still live after Close: a buffer leaked", got)
	}
}

func TestConcurrentCommitsOfOneSet(t *testing.T) {
	s := newStore(t)
	base := liveBytes()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_ = s.Commit("acme", Meta{Version: w*1000 + i}, versioned(w*1000+i))
			}
		}()
	}
	wg.Wait()
	cur, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	prev, err := s.AcquirePrevious("acme")
	if err != nil {
		t.Fatal(err)
	}
	if cur == prev {
		t.Fatal("current and previous are the same set")
	}
	cur.Release()
	prev.Release()
	s.Close()
	if got := liveBytes() - base; got != 0 {
		t.Fatalf("%d bytes live after Close: concurrent commits leaked a set", got)
	}
}

func TestNoValueInLogs(t *testing.T) {
	s := newStore(t)
	commit(t, s, "acme", 9)
	set, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Release()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("committed", "set", set)
	log.Info("committed", "set_string", set.String())
	out := buf.String() + fmt.Sprint(set) + fmt.Sprintf("%v %+v %s", set, set, set)
	if strings.Contains(out, "FAKE") {
		t.Fatalf("a value reached the log: %s", out)
	}
	if !strings.Contains(buf.String(), `"version":9`) || !strings.Contains(buf.String(), `"credential":"acme"`) {
		t.Fatalf("log lacks name and version: %s", buf.String())
	}
}

// TestCommitWithRunsBeforePublish: prepared runs once the version is built
// and before a reader can acquire it.
func TestCommitWithRunsBeforePublish(t *testing.T) {
	st, err := New([]Declared{{Name: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	calls := 0
	err = st.CommitWith("a", Meta{Version: 1}, map[string][]byte{"k": []byte("FAKE-v")}, func() {
		calls++
		if _, err := st.Acquire("a"); !errors.Is(err, ErrNotReady) {
			t.Errorf("the version is visible before prepared returned: %v", err)
		}
	})
	if err != nil || calls != 1 {
		t.Fatalf("CommitWith: %v, prepared called %d times", err, calls)
	}
	set, err := st.Acquire("a")
	if err != nil || set.Version() != 1 {
		t.Fatalf("after CommitWith: %v", err)
	}
	set.Release()
	if err := st.CommitWith("nope", Meta{Version: 1}, map[string][]byte{}, func() { t.Error("prepared ran for an unknown set") }); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown set: %v", err)
	}
}
