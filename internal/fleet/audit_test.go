package fleet

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Lines as Vault 1.21's file audit device writes them: two metadata reads
// of the fleet's mount (one refused by a rate-limit quota), a response
// line, a read elsewhere, a write, and a line that is not JSON.
const auditSample = `{"time":"2026-01-01T10:00:01.5Z","type":"request","request":{"operation":"read","path":"ovl/metadata/s01"}}
{"time":"2026-01-01T10:00:00.5Z","type":"request","error":"request path \"ovl/metadata/s00\": rate limit quota exceeded","request":{"operation":"read","path":"ovl/metadata/s00"}}
{"time":"2026-01-01T10:00:00.6Z","type":"response","request":{"operation":"read","path":"ovl/metadata/s00"}}
{"time":"2026-01-01T10:00:00.7Z","type":"request","request":{"operation":"read","path":"secret/metadata/x"}}
{"time":"2026-01-01T10:00:00.8Z","type":"request","request":{"operation":"update","path":"ovl/metadata/s00"}}
not json
`

func TestAuditedReads(t *testing.T) {
	reads, limited, err := auditedReads(strings.NewReader(auditSample), "ovl/metadata/")
	if err != nil {
		t.Fatal(err)
	}
	t0, _ := time.Parse(time.RFC3339, "2026-01-01T10:00:00Z")
	want := []time.Time{t0.Add(500 * time.Millisecond), t0.Add(1500 * time.Millisecond)}
	if !slices.EqualFunc(reads, want, time.Time.Equal) || limited != 1 {
		t.Fatalf("reads %v limited %d, want %v (sorted) and 1", reads, limited, want)
	}
	if got := Rate(reads, t0, t0.Add(time.Second)); got != 1 {
		t.Errorf("Rate over the first second = %v, want 1", got)
	}
	if got := Rate(reads, t0, t0.Add(4*time.Second)); got != 0.5 {
		t.Errorf("Rate over 4 s = %v, want 0.5", got)
	}
	if got := Rate(reads, t0, t0); got != 0 {
		t.Errorf("Rate over an empty window = %v, want 0", got)
	}
	if got := PerSecond(reads, t0, 3); !slices.Equal(got, []int{1, 1, 0}) {
		t.Errorf("PerSecond = %v, want [1 1 0]", got)
	}
}
