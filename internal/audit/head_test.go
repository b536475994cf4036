package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestWrittenHeadMetric: the exported seq and hash prefix are those of the
// last line in the file, so a monitor can tell when lines were cut off.
func TestWrittenHeadMetric(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	reg := prometheus.NewRegistry()
	reg.MustRegister(l.Collector())
	want := func(seq uint64, prefix float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
		if got[MetricLastSeq] != float64(seq) || got[MetricLastHashPrefix] != prefix || len(got) != 2 {
			t.Fatalf("metrics %v, want seq %d hash prefix %v", got, seq, prefix)
		}
	}
	want(0, 0)
	for i := range 3 {
		l.Log(Record{Event: Fetch, Credential: "c", Version: i + 1, Result: "ok"})
	}
	ctx, cancel := contextCanceled()
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var last struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if seq, hash := l.Written(); seq != 3 || seq != last.Seq || hash != last.Hash {
		t.Fatalf("Written = %d %s; the file ends with seq %d hash %s", seq, hash, last.Seq, last.Hash)
	}
	n, err := strconv.ParseUint(last.Hash[:12], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	want(3, float64(n))
}
