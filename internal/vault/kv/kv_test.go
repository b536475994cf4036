package kv_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/kv"
)

var tv *testenv.Vault

func TestMain(m *testing.M) { testenv.MainVault(m, &tv) }

func fields(kvs ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i < len(kvs); i += 2 {
		m[kvs[i]] = []byte(kvs[i+1])
	}
	return m
}

func value(t *testing.T, v kv.Version, name string) string {
	t.Helper()
	b, err := kv.Value(v.Data[name])
	if err != nil {
		t.Fatalf("field %s: %v", name, err)
	}
	return string(b)
}

// TestKVRoundTrip writes, reads, deletes, lists and checks metadata
// through the layer against a real Vault.
func TestKVRoundTrip(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	c := kv.New(tv.Client())
	base := "kvlayer/" + strings.ToLower(t.Name())
	p := base + "/acme/zerodha"

	if _, err := c.Read(ctx, "secret", p, 0); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("read of a missing secret: %v, want ErrNotFound", err)
	}
	if _, err := c.Metadata(ctx, "secret", p); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("metadata of a missing secret: %v, want ErrNotFound", err)
	}
	v1, err := c.Write(ctx, "secret", p, fields("api_key", "FAKE-key-1", "note", "line\n\"quoted\""), 0)
	if err != nil || v1 != 1 {
		t.Fatalf("create: version %d, %v", v1, err)
	}
	_, err = c.Write(ctx, "secret", p, fields("api_key", "FAKE-key-x"), 0)
	var ce *vault.CASError
	if !errors.As(err, &ce) || !errors.Is(err, vault.ErrCASConflict) || ce.Want != 0 || ce.Have != 1 {
		t.Fatalf("create over an existing secret: %v, want CASError want 0 have 1", err)
	}
	v2, err := c.Write(ctx, "secret", p, fields("api_key", "FAKE-key-2"), 1)
	if err != nil || v2 != 2 {
		t.Fatalf("rotate: version %d, %v", v2, err)
	}
	if _, err := c.Write(ctx, "secret", p, fields("api_key", "FAKE-key-3"), 1); !errors.As(err, &ce) || ce.Want != 1 || ce.Have != 2 {
		t.Fatalf("stale cas: %v, want CASError want 1 have 2", err)
	}

	cur, err := c.Read(ctx, "secret", p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Meta.Version != 2 || value(t, cur, "api_key") != "FAKE-key-2" || cur.Meta.CreatedTime.IsZero() {
		t.Fatalf("current: version %d created %v", cur.Meta.Version, cur.Meta.CreatedTime)
	}
	raw := cur.Data["api_key"]
	cur.Wipe()
	if len(raw) == 0 || slices.ContainsFunc([]byte(raw), func(b byte) bool { return b != 0 }) {
		t.Fatalf("Wipe left the raw value (%d bytes)", len(raw))
	}
	old, err := c.Read(ctx, "secret", p, 1)
	if err != nil || value(t, old, "note") != "line\n\"quoted\"" {
		t.Fatalf("version 1: %v", err)
	}
	if _, err := c.Read(ctx, "secret", p, 9); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("read of a missing version: %v, want ErrNotFound", err)
	}

	if err := c.WriteCustomMetadata(ctx, "secret", p, map[string]string{"expires_at": "2030-01-02T03:04:05Z"}); err != nil {
		t.Fatal(err)
	}
	md, err := c.Metadata(ctx, "secret", p)
	if err != nil {
		t.Fatal(err)
	}
	if md.CurrentVersion != 2 || len(md.Versions) != 2 || md.CustomMetadata["expires_at"] != "2030-01-02T03:04:05Z" {
		t.Fatalf("metadata: current %d versions %d custom %v", md.CurrentVersion, len(md.Versions), md.CustomMetadata)
	}
	if n := md.Newest(); n[0].Version != 2 || n[1].Version != 1 {
		t.Fatalf("newest first: %+v", n)
	}
	if again, err := c.Read(ctx, "secret", p, 0); err != nil || again.CustomMetadata["expires_at"] == "" {
		t.Fatalf("a read carries custom metadata: %v %v", again.CustomMetadata, err)
	}

	if err := c.Delete(ctx, "secret", p, 2); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(ctx, "secret", p, 0)
	var de *kv.DeletedError
	if !errors.As(err, &de) || !errors.Is(err, vault.ErrDeleted) || de.Meta.Version != 2 || de.Meta.DeletionTime.IsZero() {
		t.Fatalf("read of a deleted version: %v, want DeletedError for version 2", err)
	}
	md, err = c.Metadata(ctx, "secret", p)
	if err != nil || !md.Versions[2].Gone(de.Meta.DeletionTime) || md.Versions[1].Gone(de.Meta.DeletionTime) {
		t.Fatalf("metadata after delete: %+v %v", md.Versions, err)
	}

	if _, err := c.Write(ctx, "secret", base+"/beta/feed", fields("k", "FAKE"), 0); err != nil {
		t.Fatal(err)
	}
	top, err := c.List(ctx, "secret", base)
	if err != nil || strings.Join(top, ",") != "acme/,beta/" {
		t.Fatalf("list: %q %v", top, err)
	}
	all, err := c.ListRecursive(ctx, "secret", base)
	if err != nil || strings.Join(all, ",") != base+"/acme/zerodha,"+base+"/beta/feed" {
		t.Fatalf("list recursive: %q %v", all, err)
	}
	if none, err := c.List(ctx, "secret", base+"/nothing"); err != nil || len(none) != 0 {
		t.Fatalf("list of an empty prefix: %q %v", none, err)
	}

	info, err := c.Mount(ctx, "secret")
	if err != nil || !info.IsKV2() || info.Path != "secret" {
		t.Fatalf("mount: %+v %v", info, err)
	}
	if info, err := c.Mount(ctx, "transit"); err != nil || info.IsKV2() || info.Type != "transit" {
		t.Fatalf("transit mount: %+v %v", info, err)
	}
}

// TestKVPermission: a token without the policy gets ErrPermission, and the
// error names neither the token nor a value.
func TestKVPermission(t *testing.T) {
	testenv.NeedServers(t)
	root := tv.Client()
	tok, err := root.Auth().Token().Create(&apiTokenRequest)
	if err != nil {
		t.Fatal(err)
	}
	c := tv.Client()
	c.SetToken(tok.Auth.ClientToken)
	_, err = kv.New(c).Read(context.Background(), "secret", "kvlayer/denied", 0)
	if !errors.Is(err, vault.ErrPermission) || errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("read without policy: %v, want ErrPermission", err)
	}
	if strings.Contains(err.Error(), tok.Auth.ClientToken) {
		t.Fatal("error shows the token")
	}
}
