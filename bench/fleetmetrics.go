package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/credlet/credlet/internal/testenv"
)

// sumCounter sums, in a Prometheus text exposition, every sample of metric
// name whose labels include all of match (name="value").
func sumCounter(text []byte, name string, match map[string]string) (float64, error) {
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("metrics: %s: unterminated labels: %.80q", name, line)
			}
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		if !labelsMatch(labels, match) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, fmt.Errorf("metrics: %s: no value: %.80q", name, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics: %s: value %q: %w", name, f[0], err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, sc.Err()
	}
	return sum, sc.Err()
}

// labelsMatch reports whether a label list (a="x",b="y") has every pair of
// match. Label values here carry no escaped quotes or commas.
func labelsMatch(labels string, match map[string]string) bool {
	got := map[string]string{}
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		got[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	for k, v := range match {
		if got[k] != v {
			return false
		}
	}
	return true
}

// tokenReviews is how many TokenReview requests the apiserver has served
// (apiserver_request_total{resource="tokenreviews"}, every code and verb).
func tokenReviews(ctx context.Context, k *testenv.Kube) (float64, error) {
	b, err := k.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("apiserver /metrics: %w", err)
	}
	return sumCounter(b, "apiserver_request_total", map[string]string{"resource": "tokenreviews"})
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// cpuSeconds is a process's user+system CPU time so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc stat: utime %q stime %q", f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// readAuditRange parses the audit log's bytes [from, to) (to < 0: to the
// end). A partial line at either end (a boundary taken while Vault was
// writing) is skipped.
func readAuditRange(path string, from, to int64) ([]auditEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	if to < 0 {
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		to = fi.Size()
	}
	if from > 0 {
		// Start after the first newline at or after from-1, so a line that
		// starts exactly at from is kept.
		from--
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 1<<20)
	if from > 0 {
		if _, err := r.ReadSlice('\n'); err != nil && err != bufio.ErrBufferFull {
			return nil, nil
		}
	}
	var buf bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a trailing line without its newline: partial
		}
		if err != nil {
			return nil, err
		}
		buf.Write(line)
	}
	return parseAudit(&buf)
}
