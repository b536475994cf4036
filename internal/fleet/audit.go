package fleet

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// AuditedReads returns, from Vault's file audit log file, the time of every
// read request whose path starts with prefix (requests a rate-limit quota
// refused included: Vault audits those when the quota config asks for it),
// sorted, and how many a rate-limit quota refused.
func AuditedReads(file, prefix string) (reads []time.Time, limited int, err error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, 0, fmt.Errorf("audit log: %w", err)
	}
	defer fh.Close()
	return auditedReads(fh, prefix)
}

func auditedReads(r io.Reader, prefix string) (reads []time.Time, limited int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Error   string    `json:"error"`
			Request struct {
				Operation string `json:"operation"`
				Path      string `json:"path"`
			} `json:"request"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Type != "request" || e.Request.Operation != "read" ||
			!strings.HasPrefix(e.Request.Path, prefix) {
			continue
		}
		reads = append(reads, e.Time)
		if strings.Contains(e.Error, "rate limit quota exceeded") {
			limited++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("audit log: %w", err)
	}
	sort.Slice(reads, func(i, j int) bool { return reads[i].Before(reads[j]) })
	return reads, limited, nil
}

// Rate is the number of times in [from, to) per second.
func Rate(times []time.Time, from, to time.Time) float64 {
	if !to.After(from) {
		return 0
	}
	n := 0
	for _, at := range times {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

// PerSecond counts the times in each of the secs seconds after from.
func PerSecond(times []time.Time, from time.Time, secs int) []int {
	out := make([]int, max(secs, 0))
	for _, at := range times {
		if i := int(at.Sub(from) / time.Second); at.After(from) && i < secs {
			out[i]++
		}
	}
	return out
}
