package creds

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/testenv"
)

// newKey creates a Transit key for one test; suffix tells a test's keys
// apart.
func newKey(t *testing.T, suffix string, derived bool, extra map[string]any) string {
	t.Helper()
	key := "k-" + strings.ToLower(unsafeChars.ReplaceAllString(t.Name(), "-")) + suffix
	body := map[string]any{"derived": derived}
	for k, v := range extra {
		body[k] = v
	}
	if _, err := vlt.Client().Logical().Write("transit/keys/"+key, body); err != nil {
		t.Fatal(err)
	}
	return key
}

func rotateKey(t *testing.T, key string) {
	t.Helper()
	if _, err := vlt.Client().Logical().Write("transit/keys/"+key+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
}

// decryptWith decrypts ciphertext with the root token.
func decryptWith(t *testing.T, key, keyContext, ct string) (string, error) {
	t.Helper()
	body := map[string]any{"ciphertext": ct}
	if keyContext != "" {
		body["context"] = base64.StdEncoding.EncodeToString([]byte(keyContext))
	}
	s, err := vlt.Client().Logical().Write("transit/decrypt/"+key, body)
	if err != nil {
		return "", err
	}
	pt, _ := base64.StdEncoding.DecodeString(s.Data["plaintext"].(string))
	return string(pt), nil
}

// versions returns each path's current version.
func versions(t *testing.T, b Backend, paths ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range paths {
		m, err := b.Metadata(context.Background(), p)
		if err != nil {
			t.Fatalf("metadata %s: %v", p, err)
		}
		out[p] = m.Current
	}
	return out
}

func noValues(t *testing.T, where, s string) {
	t.Helper()
	if strings.Contains(s, "FAKE") {
		t.Fatalf("%s shows a value:\n%s", where, s)
	}
}

// TestRewrap: after the key rotates, rewrap moves every Transit field under
// the prefix (recursively) to the latest key version as a new KV version,
// keeps plain fields, leaves plain-only sets alone; a dry run writes
// nothing; a second run writes nothing; then min_decryption_version can be
// rewrapMark reads the rewrap marker in the set's custom metadata (0 and
// the zero time: none).
func rewrapMark(t *testing.T, b *Vault, path string) (int, time.Time, error) {
	t.Helper()
	cm, err := b.customMetadata(context.Background(), path)
	v, at, _ := credspec.RewrapMark(cm)
	return v, at, err
}

// raised and every set still decrypts.
func TestRewrap(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	b := vaultWithToken(t, vlt.RootToken)
	pre := testPrefix(t)
	key := newKey(t, "", true, nil)
	tr := WriteOptions{TransitKey: key, Context: "acme", TransitFields: []string{"api_secret", "token"}}
	sets := []string{pre + "/acme/zerodha", pre + "/acme/desk/upstox", pre + "/acme/desk/eu/kite"}
	for i, p := range sets {
		if _, err := Put(ctx, b, p, vals("api_key", fmt.Sprintf("FAKE-key-%d", i), "api_secret", fmt.Sprintf("FAKE-secret-%d", i), "token", fmt.Sprintf("FAKE-token-%d", i)), tr); err != nil {
			t.Fatal(err)
		}
	}
	plain := pre + "/acme/plain"
	if _, err := Put(ctx, b, plain, vals("api_key", "FAKE-plain"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{}, sets...), plain)
	rotateKey(t, key)
	rotateKey(t, key) // latest is v3; the sets hold v1

	before := versions(t, b, all...)
	var out bytes.Buffer
	st, err := Rewrap(ctx, b, pre+"/acme", RewrapOptions{Key: key, Context: "acme", DryRun: true}, &out)
	if err != nil || st.Rewrapped != 3 || st.Plain != 1 {
		t.Fatalf("dry run: %+v %v\n%s", st, err, out.String())
	}
	if got := versions(t, b, all...); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("the dry run wrote: versions %v, before %v", got, before)
	}
	if !strings.Contains(out.String(), "would rewrap "+sets[0]+": version 1 (api_secret v1, token v1 -> key v3)") ||
		!strings.Contains(out.String(), "dry run: nothing written") {
		t.Fatalf("dry-run output:\n%s", out.String())
	}
	noValues(t, "dry-run output", out.String())

	out.Reset()
	st, err = Rewrap(ctx, b, pre+"/acme/", RewrapOptions{Key: key, Context: "acme", Batch: 2}, &out)
	if err != nil || st.Rewrapped != 3 || st.Plain != 1 || st.Current != 0 || st.Latest != 3 {
		t.Fatalf("rewrap: %+v %v\n%s", st, err, out.String())
	}
	noValues(t, "rewrap output", out.String())
	if n := strings.Count(out.String(), "\n"); n != 6 { // 4 sets, the summary, the min_decryption_version hint
		t.Errorf("rewrap printed %d lines; want one per set plus two:\n%s", n, out.String())
	}
	for i, p := range sets {
		got := mustRead(t, b, p, 0)
		if got["api_key"] != fmt.Sprintf("FAKE-key-%d", i) {
			t.Errorf("%s: the plain field changed", p)
		}
		for _, f := range []string{"api_secret", "token"} {
			if !strings.HasPrefix(got[f], "vault:v3:") {
				t.Errorf("%s %s: not rewrapped to v3: %.9s", p, f, got[f])
			}
		}
		if !strings.Contains(out.String(), "rewrapped "+p+": version 1 -> 2") {
			t.Errorf("no line for %s:\n%s", p, out.String())
		}
	}
	if versions(t, b, plain)[plain] != 1 {
		t.Errorf("a set without ciphertext was written")
	}
	// Each rewrapped version is marked as holding the values of version 1.
	created := map[string]time.Time{}
	for _, p := range sets {
		md, err := b.Metadata(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		v1, _ := md.Info(1)
		created[p] = v1.CreatedAt
		if v, at, err := rewrapMark(t, b, p); err != nil || v != 2 || !at.Equal(v1.CreatedAt) {
			t.Errorf("%s: rewrap marker version %d rotated at %v (%v); want 2, version 1's creation %v", p, v, at, err, v1.CreatedAt)
		}
	}

	// A second run writes nothing.
	out.Reset()
	st, err = Rewrap(ctx, b, pre+"/acme", RewrapOptions{Key: key, Context: "acme"}, &out)
	if err != nil || st.Rewrapped != 0 || st.Current != 3 {
		t.Fatalf("second rewrap: %+v %v\n%s", st, err, out.String())
	}
	for _, p := range sets {
		if v := versions(t, b, p)[p]; v != 2 {
			t.Errorf("second run wrote %s (version %d)", p, v)
		}
	}

	// A rewrap of a rewrap carries the rotation time over; a rewrap after
	// a real rotation marks that rotation.
	rotateKey(t, key)
	if _, err := Rotate(ctx, b, sets[2], vals("token", "FAKE-token-new"), WriteOptions{TransitKey: key, Context: "acme", TransitFields: []string{"token"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rewrap(ctx, b, pre+"/acme", RewrapOptions{Key: key, Context: "acme"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, p := range sets[:2] {
		if v, at, err := rewrapMark(t, b, p); err != nil || v != 3 || !at.Equal(created[p]) {
			t.Errorf("%s after a second rewrap: marker version %d rotated at %v (%v); want 3, %v", p, v, at, err, created[p])
		}
	}
	md, err := b.Metadata(ctx, sets[2])
	if err != nil {
		t.Fatal(err)
	}
	v3, _ := md.Info(3)
	if v, at, err := rewrapMark(t, b, sets[2]); err != nil || v != 4 || !at.Equal(v3.CreatedAt) {
		t.Errorf("%s rotated then rewrapped: marker version %d rotated at %v (%v); want 4, version 3's creation %v", sets[2], v, at, err, v3.CreatedAt)
	}
	if got := mustRead(t, b, sets[2], 0); got["api_key"] != "FAKE-key-2" || !strings.HasPrefix(got["token"], "vault:v4:") {
		t.Errorf("%s after rotate and rewrap: api_key changed or token not at v4 (%.9s)", sets[2], got["token"])
	}

	// Old key versions can go: the sets still decrypt.
	if _, err := vlt.Client().Logical().Write("transit/keys/"+key+"/config", map[string]any{"min_decryption_version": 4}); err != nil {
		t.Fatal(err)
	}
	for i, p := range sets {
		got := mustRead(t, b, p, 0)
		if pt, err := decryptWith(t, key, "acme", got["api_secret"]); err != nil || pt != fmt.Sprintf("FAKE-secret-%d", i) {
			t.Errorf("%s after min_decryption_version 4: %v (plaintext matches: %t)", p, err, pt == fmt.Sprintf("FAKE-secret-%d", i))
		}
		old := mustRead(t, b, p, 1)
		if _, err := decryptWith(t, key, "acme", old["api_secret"]); err == nil {
			t.Errorf("%s version 1 still decrypts after min_decryption_version 4", p)
		}
	}
}

// TestRewrapFailures: one bad set fails alone (its neighbours in the same
// batch are rewrapped); a wrong context, a missing key, a plain key with a
// context and an empty prefix are one-line errors.
func TestRewrapFailures(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	b := vaultWithToken(t, vlt.RootToken)
	pre := testPrefix(t)
	key := newKey(t, "", true, nil)
	other := newKey(t, "-other", false, map[string]any{"type": "aes256-gcm96"})
	tr := WriteOptions{TransitKey: key, Context: "acme"}
	good := []string{pre + "/a/one", pre + "/a/two"}
	for _, p := range good {
		if _, err := Put(ctx, b, p, vals("api_secret", "FAKE-s"), tr); err != nil {
			t.Fatal(err)
		}
	}
	// Ciphertext of another key, made when that key was at v1, while key is at v2.
	bad := pre + "/a/other-key"
	if _, err := Put(ctx, b, bad, vals("api_secret", "FAKE-o"), WriteOptions{TransitKey: other}); err != nil {
		t.Fatal(err)
	}
	rotateKey(t, key)

	var out bytes.Buffer
	st, err := Rewrap(ctx, b, pre+"/a", RewrapOptions{Key: key, Context: "acme", Batch: 10}, &out)
	if !errors.Is(err, ErrRewrapIncomplete) || st.Failed != 1 || st.Rewrapped != 2 {
		t.Fatalf("rewrap with one bad set: %+v %v\n%s", st, err, out.String())
	}
	if !strings.Contains(out.String(), "FAILED "+bad+": ") {
		t.Errorf("the bad set is not named:\n%s", out.String())
	}
	wantKind(t, err, ErrRewrapIncomplete, "1 of 3 sets failed")
	noValues(t, "output", out.String())

	rotateKey(t, key)
	out.Reset()
	st, err = Rewrap(ctx, b, pre+"/a/one", RewrapOptions{Key: key, Context: "beta"}, &out)
	if !errors.Is(err, ErrRewrapIncomplete) || st.Failed != 1 || versions(t, b, good[0])[good[0]] != 2 {
		t.Fatalf("wrong context: %+v %v\n%s", st, err, out.String())
	}

	for _, tc := range []struct {
		name   string
		prefix string
		o      RewrapOptions
		kind   error
		msg    string
	}{
		{"no key", pre + "/a", RewrapOptions{}, ErrUsage, "rewrap needs --transit KEY"},
		{"missing key", pre + "/a", RewrapOptions{Key: "nokey-rewrap"}, ErrTransit, "transit key nokey-rewrap does not exist"},
		{"derived without context", pre + "/a", RewrapOptions{Key: key}, ErrUsage, "is derived: --context is required"},
		{"plain key with context", pre + "/a", RewrapOptions{Key: other, Context: "acme"}, ErrUsage, "is not derived"},
		{"nothing there", pre + "/nothing", RewrapOptions{Key: key, Context: "acme"}, ErrNotFound, "no credential set at or under"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Rewrap(ctx, b, tc.prefix, tc.o, &bytes.Buffer{})
			wantKind(t, err, tc.kind, tc.msg)
		})
	}
}

// TestKeys: a fresh key with auto-rotation at 30 days passes; an old
// latest version, auto-rotation off, or a longer period each fail with a
// line naming the breach and the fix.
func TestKeys(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	b := vaultWithToken(t, vlt.RootToken)
	good := newKey(t, "-good", true, map[string]any{"auto_rotate_period": "720h"})
	rotateKey(t, good)

	var out bytes.Buffer
	if err := Keys(ctx, b, good, KeysOptions{}, &out); err != nil {
		t.Fatalf("fresh key: %v\n%s", err, out.String())
	}
	for _, want := range []string{"latest version          2, created ", "min_decryption_version  1", "auto_rotate_period      720h0m0s (30d 0h)", "versions                1 (", "ok: the latest version is"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	later := func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }
	out.Reset()
	err := Keys(ctx, b, good, KeysOptions{Now: later}, &out)
	wantKind(t, err, ErrKeyPolicy, "latest version 2 is 31d 0h old, older than --max-age 720h0m0s")
	if strings.Contains(err.Error(), "auto-rotation") {
		t.Errorf("auto-rotation is on, yet reported: %v", err)
	}
	if err := Keys(ctx, b, good, KeysOptions{Now: later, MaxAge: 800 * time.Hour}, &bytes.Buffer{}); err != nil {
		t.Errorf("31 days with --max-age 800h: %v", err)
	}

	off := newKey(t, "-off", false, nil)
	err = Keys(ctx, b, off, KeysOptions{}, &out)
	wantKind(t, err, ErrKeyPolicy, "auto-rotation is off (turn it on: vault write transit/keys/"+off+"/config auto_rotate_period=720h0m0s)")

	slow := newKey(t, "-slow", false, map[string]any{"auto_rotate_period": "1000h"})
	err = Keys(ctx, b, slow, KeysOptions{}, &out)
	wantKind(t, err, ErrKeyPolicy, "auto_rotate_period 1000h0m0s is longer than --max-age 720h0m0s")

	err = Keys(ctx, b, "nokey-keys", KeysOptions{}, &out)
	wantKind(t, err, ErrTransit, "transit key nokey-keys does not exist")
	err = Keys(ctx, b, "bad key!", KeysOptions{}, &out)
	wantKind(t, err, ErrUsage, `transit key "bad key!": allowed letters`)
}

// tokenWith makes a token with one policy written for the test.
func tokenWith(t *testing.T, hcl string) string {
	t.Helper()
	name := "p-" + strings.ToLower(unsafeChars.ReplaceAllString(t.Name(), "-"))
	if err := vlt.WritePolicy(name, hcl); err != nil {
		t.Fatal(err)
	}
	tok, err := vlt.Client().Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{name}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Auth.ClientToken
}
