package store

import (
	"errors"
	"testing"
	"time"
)

// TestValuesVersion: a version whose values equal the one before (a
// rewrap) keeps the values version of the one it repeats; a real change,
// a new field or a dropped one starts a new one. SameValues says the same
// before a commit.
func TestValuesVersion(t *testing.T) {
	s := newStore(t)
	status := func() Status { return s.Status()[0] }
	commitF := func(v int, f map[string][]byte) {
		t.Helper()
		if err := s.Commit("acme", Meta{Version: v}, f); err != nil {
			t.Fatal(err)
		}
	}
	commitF(1, fields("api_key", "FAKE-a", "api_secret", "FAKE-b"))
	if st := status(); st.Version != 1 || st.ValuesVersion != 1 {
		t.Fatalf("v1: %+v", st)
	}
	steps := []struct {
		version int
		f       map[string][]byte
		same    bool
		want    int
	}{
		{2, fields("api_key", "FAKE-a", "api_secret", "FAKE-b"), true, 1},                 // rewrap
		{3, fields("api_key", "FAKE-a", "api_secret", "FAKE-b"), true, 1},                 // again
		{4, fields("api_key", "FAKE-a", "api_secret", "FAKE-c"), false, 4},                // one value changed
		{5, fields("api_key", "FAKE-a", "api_secret", "FAKE-c", "x", "FAKE-x"), false, 5}, // a field added
		{6, fields("api_key", "FAKE-a", "api_secret", "FAKE-c"), false, 6},                // and dropped again
		{7, fields("api_key", "FAKE-a", "api_secret", "FAKE-"), false, 7},                 // a prefix of the old value
	}
	for _, st := range steps {
		if got := s.SameValues("acme", st.f); got != st.same {
			t.Errorf("v%d: SameValues = %v, want %v", st.version, got, st.same)
		}
		commitF(st.version, st.f)
		if got := status(); got.Version != st.version || got.ValuesVersion != st.want {
			t.Errorf("v%d: version %d, values version %d; want %d", st.version, got.Version, got.ValuesVersion, st.want)
		}
	}
	if s.SameValues("nosuch", fields("a", "b")) || newStore(t).SameValues("acme", fields("a", "b")) {
		t.Error("SameValues of an unknown or empty set is true")
	}
}

// TestSetExpiry: the served version gets a new expiry without a new
// version; the rollback pointer, the values and the long-poll waiters stay.
func TestSetExpiry(t *testing.T) {
	s := newStore(t)
	if err := s.SetExpiry("acme", t0); !errors.Is(err, ErrNotReady) {
		t.Fatalf("SetExpiry before a commit: %v", err)
	}
	commit(t, s, "acme", 1)
	commit(t, s, "acme", 2)
	exp := t0.Add(24 * time.Hour)
	if err := s.SetExpiry("acme", exp); err != nil {
		t.Fatal(err)
	}
	cur, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Release()
	if cur.Version() != 2 || !cur.ExpiresAt().Equal(exp) || cur.ValuesVersion() != 2 || !cur.FetchedAt().Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after SetExpiry: version %d expires %v values version %d", cur.Version(), cur.ExpiresAt(), cur.ValuesVersion())
	}
	if v, _ := cur.Field("api_key"); string(v) != "FAKE-key-v2" {
		t.Fatalf("values changed with the expiry")
	}
	prev, err := s.AcquirePrevious("acme")
	if err != nil || prev.Version() != 1 {
		t.Fatalf("previous after SetExpiry: %v %v", prev, err)
	}
	prev.Release()
	if err := s.SetExpiry("acme", time.Time{}); err != nil {
		t.Fatal(err)
	}
	again, _ := s.Acquire("acme")
	defer again.Release()
	if !again.ExpiresAt().IsZero() {
		t.Fatalf("expiry not cleared: %v", again.ExpiresAt())
	}
	if err := s.SetExpiry("nosuch", exp); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown set: %v", err)
	}
}
