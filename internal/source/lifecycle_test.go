package source_test

import (
	"encoding/base64"
	"strconv"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/testenv"
)

// rewrap rewraps ciphertext to the key's latest version with the root token.
func rewrap(t *testing.T, key, keyContext, ct string) string {
	t.Helper()
	s, err := tv.Client().Logical().Write("transit/rewrap/"+key, map[string]any{
		"ciphertext": ct, "context": base64.StdEncoding.EncodeToString([]byte(keyContext)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data["ciphertext"].(string)
}

// TestRewrappedVersionSkipsVerify: a new version whose ciphertext was only
// rewrapped (same plaintext) is committed without the blue/green check, does
// not move the values version (so the app is not notified) nor the
// last-rotation gauge; the next real change is verified as always.
func TestRewrappedVersionSkipsVerify(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const key, path = "partners-rewrap-src", "partners/acme/rewrapped"
	derivedKey(t, tv, key)
	ct1 := encrypt(t, tv, key, "acme", "FAKE-rw-secret-1")
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-rw-key-1", "api_secret": ct1})
	ver := &verifier{reject: map[int]bool{}}
	r := newRig(t, "zerodha=secret/"+path+";transit="+key+";context=acme", rigOpts{fake: true, verifier: ver})
	r.start()
	if v, f := r.served(); v != 1 || f["api_secret"] != "FAKE-rw-secret-1" || ver.numCalls() != 1 {
		t.Fatalf("v1: served %d, verifier calls %d", v, ver.numCalls())
	}
	lastRot := gaugeValue(r.met.LastRotation.WithLabelValues("zerodha"))

	if _, err := tv.Client().Logical().Write("transit/keys/"+key+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	ct2 := rewrap(t, key, "acme", ct1)
	if ct2[:9] != "vault:v2:" {
		t.Fatalf("rewrap gave %.9s", ct2)
	}
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-rw-key-1", "api_secret": ct2})
	r.poll()
	if v, f := r.served(); v != 2 || f["api_secret"] != "FAKE-rw-secret-1" {
		t.Fatalf("rewrapped version: served %d", v)
	}
	if ver.numCalls() != 1 {
		t.Errorf("the verifier was asked about a rewrap: %d calls", ver.numCalls())
	}
	if st := r.status(); st.ValuesVersion != 1 {
		t.Errorf("values version %d after a rewrap; want 1", st.ValuesVersion)
	}
	if got := gaugeValue(r.met.LastRotation.WithLabelValues("zerodha")); got != lastRot {
		t.Errorf("a rewrap moved the last-rotation gauge: %v -> %v", lastRot, got)
	}
	if got := r.rotations(metrics.RotationCommitted); got != 2 {
		t.Errorf("committed %v; want 2", got)
	}

	putKV(t, tv, path, map[string]any{"api_key": "FAKE-rw-key-2", "api_secret": ct2})
	r.poll()
	if v, _ := r.served(); v != 3 || ver.numCalls() != 2 || ver.seen[3] != "FAKE-rw-key-2" {
		t.Fatalf("a real change: served %d, verifier calls %d", v, ver.numCalls())
	}
	if st := r.status(); st.ValuesVersion != 3 {
		t.Errorf("values version %d after a real change; want 3", st.ValuesVersion)
	}
}

// TestRewrapMarkerAfterRestart: an agent that starts on a version creds
// rewrap wrote reports the last rotation as the rotation of the values it
// carries (from the set's custom metadata), not the rewrap; a marker for
// an older version is ignored once a real rotation follows.
func TestRewrapMarkerAfterRestart(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const key, path = "partners-rewrap-marker", "partners/acme/rewrap-marker"
	derivedKey(t, tv, key)
	ct1 := encrypt(t, tv, key, "acme", "FAKE-rm-secret-1")
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-rm-key-1", "api_secret": ct1})
	md, err := tv.Client().Logical().Read("secret/metadata/" + path)
	if err != nil {
		t.Fatal(err)
	}
	v1Created, err := time.Parse(time.RFC3339Nano, md.Data["versions"].(map[string]any)["1"].(map[string]any)["created_time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tv.Client().Logical().Write("transit/keys/"+key+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the rewrap's version is created a second later
	putKV(t, tv, path, map[string]any{"api_key": "FAKE-rm-key-1", "api_secret": rewrap(t, key, "acme", ct1)})
	mark := func(version int) {
		t.Helper()
		if _, err := tv.Client().Logical().Write("secret/metadata/"+path, map[string]any{"custom_metadata": map[string]any{
			"rewrapped_version": strconv.Itoa(version), "rotated_at": v1Created.Format(time.RFC3339Nano),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	mark(2)
	spec := "zerodha=secret/" + path + ";transit=" + key + ";context=acme"
	r := newRig(t, spec, rigOpts{fake: true})
	r.start()
	if v, _ := r.served(); v != 2 {
		t.Fatalf("served %d, want 2", v)
	}
	if got, want := gaugeValue(r.met.LastRotation.WithLabelValues("zerodha")), float64(v1Created.UnixNano())/1e9; got != want {
		t.Errorf("last rotation after a restart on the rewrapped version: %v, want version 1's creation %v", got, want)
	}

	putKV(t, tv, path, map[string]any{"api_key": "FAKE-rm-key-3", "api_secret": ct1})
	r2 := newRig(t, spec, rigOpts{fake: true})
	r2.start()
	if v, _ := r2.served(); v != 3 {
		t.Fatalf("served %d, want 3", v)
	}
	if got := gaugeValue(r2.met.LastRotation.WithLabelValues("zerodha")); got <= float64(v1Created.Unix())+1 {
		t.Errorf("last rotation after a real rotation: %v, still the marked %v", got, float64(v1Created.UnixNano())/1e9)
	}
}

// TestExpiryFromMetadata: expires_at in the secret's custom metadata is the
// served version's expiry and the gauge's value; a metadata-only change
// follows at the next poll with no request beyond the metadata read and no
// new version; the earlier of it and a scheduled KV deletion wins; a
// malformed value is ignored, the credential still served.
func TestExpiryFromMetadata(t *testing.T) {
	testenv.NeedServers(t)
	t.Parallel()
	const path = "partners/acme/oauth-expiry"
	setMeta := func(body map[string]any) {
		t.Helper()
		if _, err := tv.Client().Logical().Write("secret/metadata/"+path, body); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(20 * time.Hour).UTC().Truncate(time.Second)
	setMeta(map[string]any{"custom_metadata": map[string]string{"expires_at": exp.Format(time.RFC3339), "owner": "desk-7"}})
	putKV(t, tv, path, map[string]any{"access_token": "FAKE-oauth-1"})
	r := newRig(t, "oauth=secret/"+path, rigOpts{fake: true})
	r.start()
	expiry := func() (int, time.Time, float64) {
		t.Helper()
		set, err := r.st.Acquire("oauth")
		if err != nil {
			t.Fatal(err)
		}
		defer set.Release()
		return set.Version(), set.ExpiresAt(), gaugeValue(r.met.CredentialExpiry.WithLabelValues("oauth"))
	}
	if v, e, g := expiry(); v != 1 || !e.Equal(exp) || g != float64(exp.Unix()) {
		t.Fatalf("first fetch: version %d, expires %v, gauge %v; want %v", v, e, g, exp)
	}

	exp2 := exp.Add(3 * time.Hour)
	setMeta(map[string]any{"custom_metadata": map[string]string{"expires_at": exp2.Format(time.RFC3339)}})
	before := r.ops.Total()
	r.poll()
	if v, e, g := expiry(); v != 1 || !e.Equal(exp2) || g != float64(exp2.Unix()) {
		t.Fatalf("after a metadata change: version %d, expires %v, gauge %v; want %v", v, e, g, exp2)
	}
	if got := r.ops.Total() - before; got != 1 {
		t.Errorf("%d requests for the poll that saw the new expiry; want 1 (the metadata read)", got)
	}

	// A scheduled deletion earlier than expires_at wins.
	setMeta(map[string]any{"delete_version_after": "2h"})
	putKV(t, tv, path, map[string]any{"access_token": "FAKE-oauth-2"})
	created := createdTime(t, tv, path, 2)
	r.poll()
	if v, e, _ := expiry(); v != 2 || !e.Equal(created.Add(2*time.Hour)) {
		t.Fatalf("with delete_version_after 2h: version %d, expires %v; want %v", v, e, created.Add(2*time.Hour))
	}

	setMeta(map[string]any{"delete_version_after": "0s", "custom_metadata": map[string]string{"expires_at": "tomorrow"}})
	r.poll()
	// The version's own scheduled deletion (created + 2h) is all that is left.
	if v, e, g := expiry(); v != 2 || !e.Equal(created.Add(2*time.Hour)) || g != float64(e.Unix()) {
		t.Fatalf("malformed expires_at: version %d, expires %v, gauge %v; want %v", v, e, g, created.Add(2*time.Hour))
	}
	if r.lastError() != "" {
		t.Errorf("a malformed expiry became the credential's error: %q", r.lastError())
	}
}
