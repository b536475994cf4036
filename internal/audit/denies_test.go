package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestObserveDenySummarised: the first refusal of each (uid, gid) is
// recorded at once with what it asked for; repeats become one record with
// a count; the counts add up to the refusals; the chain verifies.
func TestObserveDenySummarised(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	for i := range 10 {
		l.ObserveDeny(&Peer{UID: 65534, GID: 0, PID: int32(100 + i)}, "acme", "peer uid 65534 gid 0 not in the allow list")
	}
	for range 3 {
		l.ObserveDeny(&Peer{UID: 1000, GID: 1000, PID: 7}, "", "peer uid 1000 gid 1000 not in the allow list")
	}
	l.ObserveDeny(nil, "", "peer credentials unavailable")
	ctx, cancel := contextCanceled()
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(strings.NewReader(buf.String())); err != nil || n != 5 {
		t.Fatalf("Verify = %d, %v; want 5 records:\n%s", n, err, buf.String())
	}
	type rec struct {
		Event      string `json:"event"`
		Credential string `json:"credential"`
		Count      int    `json:"count"`
		Result     string `json:"result"`
		Peer       *Peer  `json:"peer"`
	}
	totals := map[uint32]int{}
	var first []string
	for _, ln := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r rec
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatal(err)
		}
		if r.Event != "deny" || r.Result != "denied" {
			t.Fatalf("record %s", ln)
		}
		uid := uint32(99999)
		if r.Peer != nil {
			uid = r.Peer.UID
		}
		totals[uid] += max(r.Count, 1)
		if r.Count == 0 {
			first = append(first, r.Credential)
		}
	}
	if totals[65534] != 10 || totals[1000] != 3 || totals[99999] != 1 {
		t.Fatalf("refusals counted %v, want 10, 3 and 1:\n%s", totals, buf.String())
	}
	if strings.Join(first, ",") != "acme,," {
		t.Fatalf("first records named %q", first)
	}
}
