package webhook

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/credlet/credlet/internal/injectorconfig"
	"github.com/credlet/credlet/internal/mutate"
)

// benchReview is testdata/bench-pod.yaml wrapped in an AdmissionReview.
func benchReview(tb testing.TB) []byte {
	tb.Helper()
	y, err := os.ReadFile(filepath.Join("testdata", "bench-pod.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	pod, err := yaml.YAMLToJSON(y)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": testUID, "operation": "CREATE", "namespace": "partner-acme",
			"kind":     map[string]string{"version": "v1", "kind": "Pod"},
			"resource": map[string]string{"version": "v1", "resource": "pods"},
			"userInfo": map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"},
			"object":   json.RawMessage(pod),
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func benchHandler(tb testing.TB) *mutate.Handler {
	tb.Helper()
	dir := tb.TempDir()
	p := filepath.Join(dir, "config.yaml")
	cfg := "namespaces:\n  partner-acme:\n    allowedPaths: [secret/partners/acme]\n"
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	c, err := injectorconfig.Load(p, injectorconfig.Settings{AgentImage: "registry.example.test/credlet-agent:v1", VaultAddr: "https://vault.example.test:8200"})
	if err != nil {
		tb.Fatal(err)
	}
	return &mutate.Handler{Config: c, Log: discard()}
}

// BenchmarkAdmissionHTTPS drives /mutate through TLS with 8 concurrent
// keep-alive HTTP/1.1 clients, one connection each, and reports latency
// percentiles and throughput. Target: p99 <= 2 ms, >= 5000 admissions/s.
func BenchmarkAdmissionHTTPS(b *testing.B) { benchAdmission(b, benchHandler(b)) }

// BenchmarkAdmissionHTTPSCached: the same with the patch cache, as
// credlet-injector runs by default: every request after the first is a hit.
func BenchmarkAdmissionHTTPSCached(b *testing.B) {
	h := benchHandler(b)
	h.Cache = mutate.NewPatchCache(64)
	benchAdmission(b, h)
}

func benchAdmission(b *testing.B, h *mutate.Handler) {
	const clients = 8
	ts := startServer(b, h, 0)
	body := benchReview(b)
	cs := make([]*http.Client, clients)
	for i := range cs {
		tr := &http.Transport{
			TLSClientConfig:     ts.client(0).Transport.(*http.Transport).TLSClientConfig,
			MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1
		}
		cs[i] = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		if err := admit(cs[i], ts.url, body, true); err != nil { // handshake outside the timing
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				t0 := time.Now()
				if err := admit(cs[i], ts.url, body, false); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "admissions/s")
	// CPU time (server and clients, this process) per admission: unlike
	// wall time it holds when other work shares the machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-us/admission")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// admit posts one review; check decodes the answer and wants a patch.
func admit(c *http.Client, url string, body []byte, check bool) error {
	resp, err := c.Post(url+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"allowed":true`)) {
		return &benchError{resp.StatusCode, string(out)}
	}
	if check && !bytes.Contains(out, []byte(`"patchType":"JSONPatch"`)) {
		return &benchError{resp.StatusCode, "no patch: " + string(out)}
	}
	return nil
}

type benchError struct {
	code int
	body string
}

func (e *benchError) Error() string { return http.StatusText(e.code) + ": " + e.body }

// TestBenchReviewInjects keeps the benchmark honest: its review is patched.
func TestBenchReviewInjects(t *testing.T) {
	ts := startServer(t, benchHandler(t), 0)
	if err := admit(ts.client(0), ts.url, benchReview(t), true); err != nil {
		t.Fatal(err)
	}
}
