package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/credlet/credlet/internal/testcert"
	"github.com/credlet/credlet/internal/testenv"
)

// BenchmarkInjectorProcess runs the credlet-injector binary and drives
// /mutate with 8 concurrent TLS keep-alive HTTP/1.1 clients, one connection
// each, with the review in internal/webhook/testdata/bench-pod.yaml (which
// also carries the Vault Agent Injector's annotations, for a side-by-side
// run). It reports latency percentiles, throughput, the injector's own CPU
// time per admission, and its resident memory (peak and at the end).
// Targets: p99 <= 2 ms, >= 5000 admissions/s, RSS <= 30 MiB.
// It needs no server: run it with -short to skip this package's TestMain.
//
// same-pod replays one review, as a Deployment's replicas arrive
// (byte-identical: after the first, the patch cache answers); unique-pods
// gives every request its own pod name, so each one is decoded, mutated and
// diffed (the cost of a pod never seen; the like-for-like comparison with an
// injector without a cache).
func BenchmarkInjectorProcess(b *testing.B) {
	b.Run("same-pod", func(b *testing.B) { benchInjectorProcess(b, 1) })
	b.Run("unique-pods", func(b *testing.B) { benchInjectorProcess(b, 4096) })
}

func benchInjectorProcess(b *testing.B, distinct int) {
	const clients = 8
	bin := buildInjector(b)
	dir := b.TempDir()
	ca, err := testcert.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("injector", "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	cf, kf, err := testcert.WritePair(dir, certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("namespaces:\n  partner-acme:\n    allowedPaths: [secret/partners/acme]\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	mport, err := testenv.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--listen="+addr, "--metrics-listen="+fmt.Sprintf("127.0.0.1:%d", mport),
		"--tls-cert-file="+cf, "--tls-key-file="+kf, "--config="+cfg, "--log-level=warn",
		"--agent-image=registry.example.test/credlet-agent:v1", "--vault-addr=https://vault.example.test:8200")
	cmd.Args = append(cmd.Args, strings.Fields(os.Getenv("CREDLET_BENCH_INJECTOR_ARGS"))...) // e.g. --patch-cache=0
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Errorf("injector exit: %v", err)
		}
	}()
	url := "https://" + addr + "/mutate"
	bodies := make([][]byte, distinct)
	for i := range bodies {
		bodies[i] = processBenchReview(b, i)
	}
	body := bodies[0]
	cs := make([]*http.Client, clients)
	for i := range cs {
		cs[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:     ca.TLSClientConfig(),
			MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for { // ready, and every client connected
		if err := post(cs[0], url, body); err == nil {
			break
		}
		if ctx.Err() != nil {
			b.Fatal("injector not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range cs {
		if err := post(c, url, body); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var failed atomic.Value
	var wg sync.WaitGroup
	cpu0 := procCPU(b, cmd.Process.Pid)
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				t0 := time.Now()
				if err := post(cs[i], url, bodies[int(n)%len(bodies)]); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	cpu := procCPU(b, cmd.Process.Pid) - cpu0
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "admissions/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "server-cpu-us/admission")
	hwm, rss := procMemory(b, cmd.Process.Pid)
	b.ReportMetric(hwm, "peak-rss-MiB")
	b.ReportMetric(rss, "rss-MiB")
}

func post(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"patchType":"JSONPatch"`)) {
		return fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, out)
	}
	return nil
}

func processBenchReview(tb testing.TB, n int) []byte {
	tb.Helper()
	y, err := os.ReadFile(filepath.Join("..", "..", "internal", "webhook", "testdata", "bench-pod.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	pod, err := yaml.YAMLToJSON(y)
	if err != nil {
		tb.Fatal(err)
	}
	if n > 0 {
		pod = bytes.Replace(pod, []byte(`"generateName":"trader-7d9f8c-"`), fmt.Appendf(nil, `"name":"trader-%d"`, n), 1)
	}
	b, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": "5d1b7e3a-0000-4000-8000-0000bench0001", "operation": "CREATE", "namespace": "partner-acme",
			"kind":     map[string]string{"version": "v1", "kind": "Pod"},
			"resource": map[string]string{"version": "v1", "resource": "pods"},
			"object":   json.RawMessage(pod),
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// buildInjector builds credlet-injector, or takes $CREDLET_INJECTOR_BIN.
func buildInjector(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv("CREDLET_INJECTOR_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(tb.TempDir(), "credlet-injector")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/credlet/credlet/injector")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build injector: %v\n%s", err, out)
	}
	return bin
}

// procCPU is a process's user+system time from /proc/PID/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15, counted from after "(comm)"
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// procMemory is a process's peak and current resident set, in MiB.
func procMemory(tb testing.TB, pid int) (peak, now float64) {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmHWM":
			peak = kb / 1024
		case "VmRSS":
			now = kb / 1024
		}
	}
	return peak, now
}
