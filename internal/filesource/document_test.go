package filesource

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func fields(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

func TestDocumentPutCAS(t *testing.T) {
	tests := []struct {
		name    string
		before  int // versions written first
		path    string
		cas     int
		fields  map[string][]byte
		want    int
		wantErr error
		msg     string
	}{
		{name: "create", path: "secret/a/b", cas: 0, fields: fields("k", "FAKE"), want: 1},
		{name: "create with data/ prefix", path: "secret/data/a/b", cas: 0, fields: fields("k", "FAKE"), want: 1},
		{name: "create exists", before: 2, path: "secret/a/b", cas: 0, fields: fields("k", "FAKE"), wantErr: ErrCASConflict, msg: "already exists at version 2"},
		{name: "follow current", before: 2, path: "secret/a/b", cas: 2, fields: fields("k", "FAKE"), want: 3},
		{name: "stale", before: 3, path: "secret/a/b", cas: 2, fields: fields("k", "FAKE"), wantErr: ErrCASConflict, msg: "expected version 2, it is now 3"},
		{name: "missing", path: "secret/a/b", cas: 4, fields: fields("k", "FAKE"), wantErr: ErrCASConflict, msg: "does not exist"},
		{name: "unconditional", before: 5, path: "secret/a/b", cas: -1, fields: fields("k", "FAKE"), want: 6},
		{name: "no fields", path: "secret/a/b", cas: -1, fields: map[string][]byte{}, wantErr: ErrInvalid, msg: "at least one field"},
		{name: "bad field", path: "secret/a/b", cas: -1, fields: fields(".hidden", "x"), wantErr: ErrInvalid, msg: "field name"},
		{name: "bad path", path: "secret/../b", cas: -1, fields: fields("k", "x"), wantErr: ErrInvalid, msg: "KV path"},
		{name: "mount only", path: "secret", cas: -1, fields: fields("k", "x"), wantErr: ErrInvalid, msg: "MOUNT/PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Document{}
			for i := range tt.before {
				if _, err := d.Put("secret/a/b", fields("k", fmt.Sprint("FAKE-", i)), -1, t0); err != nil {
					t.Fatal(err)
				}
			}
			got, err := d.Put(tt.path, tt.fields, tt.cas, t0.Add(time.Hour))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("version %d, want %d", got, tt.want)
			}
			r, err := d.Get("secret/a/b", 0)
			if err != nil || r.Version != tt.want || !r.CreatedAt.Equal(t0.Add(time.Hour)) || string(r.Fields["k"]) != "FAKE" {
				t.Fatalf("Get = %+v, %v", r, err)
			}
		})
	}
}

func TestDocumentHistoryBounded(t *testing.T) {
	d := &Document{}
	for i := 1; i <= MaxVersions+5; i++ {
		if _, err := d.Put("secret/x/y", fields("k", fmt.Sprint("FAKE-", i)), i-1, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := d.History("secret/x/y")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != MaxVersions || h[0].Version != MaxVersions+5 || h[len(h)-1].Version != 6 {
		t.Fatalf("history %v", versions(h))
	}
	for _, r := range h {
		if r.Fields != nil {
			t.Fatal("history carries field values")
		}
	}
	if _, err := d.Get("secret/x/y", 3); !errors.Is(err, ErrNoVersion) || !strings.Contains(err.Error(), "kept: 15, 14") {
		t.Fatalf("old version: %v", err)
	}
	r, err := d.Get("secret/x/y", 7)
	if err != nil || string(r.Fields["k"]) != "FAKE-7" {
		t.Fatalf("version 7: %v %q", err, r.Fields["k"])
	}
}

func versions(rs []Rev) []int {
	var v []int
	for _, r := range rs {
		v = append(v, r.Version)
	}
	return v
}

func TestDocumentRevokeAndRollback(t *testing.T) {
	d := &Document{}
	for i := 1; i <= 3; i++ {
		if _, err := d.Put("secret/p/q", fields("api_key", fmt.Sprint("FAKE-", i)), i-1, t0); err != nil {
			t.Fatal(err)
		}
	}
	v, err := d.Delete("secret/p/q", t0.Add(time.Minute))
	if err != nil || v != 3 {
		t.Fatalf("Delete = %d, %v", v, err)
	}
	if _, err := d.Delete("secret/p/q", t0); !errors.Is(err, ErrDeleted) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := d.Get("secret/p/q", 0); !errors.Is(err, ErrDeleted) {
		t.Fatalf("get revoked: %v", err)
	}
	if _, err := d.Rollback("secret/p/q", 3, -1, t0); !errors.Is(err, ErrDeleted) {
		t.Fatalf("rollback to revoked: %v", err)
	}
	if _, err := d.Rollback("secret/p/q", 2, 2, t0); !errors.Is(err, ErrCASConflict) {
		t.Fatalf("rollback on stale cas: %v", err)
	}
	v, err = d.Rollback("secret/p/q", 2, 3, t0.Add(2*time.Minute))
	if err != nil || v != 4 {
		t.Fatalf("Rollback = %d, %v", v, err)
	}
	r, _ := d.Get("secret/p/q", 0)
	if string(r.Fields["api_key"]) != "FAKE-2" {
		t.Fatalf("rolled back value %q", r.Fields["api_key"])
	}
	// The copy is independent: wiping version 2 leaves version 4 intact.
	old, _ := d.Get("secret/p/q", 2)
	clear(old.Fields["api_key"])
	r, _ = d.Get("secret/p/q", 4)
	if string(r.Fields["api_key"]) != "FAKE-2" {
		t.Fatal("rollback shares memory with the old version")
	}
	h, _ := d.History("secret/p/q")
	if !slices.Equal(versions(h), []int{4, 3, 2, 1}) || !h[1].Deleted() || h[0].Deleted() {
		t.Fatalf("history %+v", h)
	}
	if _, err := d.History("secret/nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing history: %v", err)
	}
}

func TestDocumentList(t *testing.T) {
	d := &Document{}
	for _, p := range []string{"secret/partners/acme/zerodha", "secret/partners/acme/kite", "secret/partners/beta/x", "secret/top", "other/a"} {
		if _, err := d.Put(p, fields("k", "FAKE"), 0, t0); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"secret", []string{"partners/", "top"}},
		{"secret/", []string{"partners/", "top"}},
		{"secret/data/partners", []string{"acme/", "beta/"}},
		{"secret/partners/acme/", []string{"kite", "zerodha"}},
		{"secret/part", nil},
		{"nomount", nil},
	}
	for _, tt := range tests {
		if got := d.List(tt.prefix); !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %v, want %v", tt.prefix, got, tt.want)
		}
	}
}

func TestNameFor(t *testing.T) {
	for in, want := range map[string]string{
		"secret/demo/exchange":      "exchange",
		"secret/partners/acme/Kite": "kite",
		"secret/a/api.key":          "api-key",
		"secret/a/_x_":              "x",
		"secret/a/...":              "credential",
	} {
		if got := NameFor(in); got != want {
			t.Errorf("NameFor(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := credentialsFor([]string{"secret/a/x", "secret/b/x"}); err == nil || !strings.Contains(err.Error(), "--credential") {
		t.Fatalf("collision: %v", err)
	}
}
