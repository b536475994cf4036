package audit

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// writtenHead is the last record known to have reached the writer: what a
// monitor compares with the file to notice that lines were cut off its end.
type writtenHead struct {
	mu   sync.Mutex
	seq  uint64
	hash string
}

func (h *writtenHead) set(seq uint64, hash string) {
	h.mu.Lock()
	h.seq, h.hash = seq, hash
	h.mu.Unlock()
}

func (h *writtenHead) get() (uint64, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq, h.hash
}

// Written returns the seq and hash of the last record written whole (for a
// file that continues a chain, the file's last record until Run writes
// one; 0 and "" before any).
func (l *Logger) Written() (seq uint64, hash string) {
	if l == nil {
		return 0, ""
	}
	return l.head.get()
}

// Metric names of Collector.
const (
	MetricLastSeq        = "credlet_audit_last_seq"
	MetricLastHashPrefix = "credlet_audit_last_hash_prefix"
)

var (
	lastSeqDesc = prometheus.NewDesc(MetricLastSeq,
		"seq of the last audit record written whole. A file whose last line has a lower seq was cut short.", nil, nil)
	lastHashDesc = prometheus.NewDesc(MetricLastHashPrefix,
		"The first 48 bits of the last written audit record's hash, as an integer (its first 12 hex digits): "+
			"the line with seq credlet_audit_last_seq must carry it.", nil, nil)
)

// Collector exports Written as two gauges read together, so one scrape
// never pairs the seq of one record with the hash of another: a monitor
// that keeps the largest seq it saw notices a log shortened at a line
// boundary, which the file alone cannot show. Neither holds anything
// secret: both are in the file itself.
func (l *Logger) Collector() prometheus.Collector { return headCollector{l} }

type headCollector struct{ l *Logger }

func (c headCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lastSeqDesc
	ch <- lastHashDesc
}

func (c headCollector) Collect(ch chan<- prometheus.Metric) {
	seq, hash := c.l.Written()
	ch <- prometheus.MustNewConstMetric(lastSeqDesc, prometheus.GaugeValue, float64(seq))
	ch <- prometheus.MustNewConstMetric(lastHashDesc, prometheus.GaugeValue, float64(hashPrefix(hash)))
}

// hashPrefix is the first 12 hex digits of hash as a number (exact in a
// float64); 0 for no hash.
func hashPrefix(hash string) uint64 {
	if len(hash) < 12 {
		return 0
	}
	n, err := strconv.ParseUint(hash[:12], 16, 64)
	if err != nil {
		return 0
	}
	return n
}
