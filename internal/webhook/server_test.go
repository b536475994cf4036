package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/credlet/credlet/internal/certwatch"
	"github.com/credlet/credlet/internal/testcert"
)

type testServer struct {
	url    string
	ca     *testcert.CA
	dir    string
	watch  *certwatch.Watcher
	server *Server
	cancel context.CancelFunc
	done   chan error
}

// startServer runs a Server with a certwatch-served certificate on
// 127.0.0.1:0; the handler answers every review with h.
func startServer(t testing.TB, h Admitter, delay time.Duration) *testServer {
	t.Helper()
	ca, err := testcert.NewCA("webhook test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM, keyPEM, err := ca.Issue("injector", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := testcert.WritePair(dir, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	w, err := certwatch.New(cf, kf, certwatch.Options{Debounce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	<-w.Updated()
	s := &Server{
		Addr:           "127.0.0.1:0",
		GetCertificate: w.GetCertificate,
		Mutate:         &Edge{Handler: h, Log: discard(), Metrics: NewMetrics(prometheus.NewRegistry())},
		Log:            discard(),
		ShutdownDelay:  delay,
		DrainTimeout:   5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{ca: ca, dir: dir, watch: w, server: s, cancel: cancel, done: make(chan error, 2)}
	go func() { ts.done <- s.Run(ctx) }()
	go func() { ts.done <- w.Run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	select { // a test that swaps the certificate needs the watch in place
	case <-w.Started():
	case <-actx.Done():
		t.Fatal("certificate watcher did not start")
	}
	addr, err := s.BoundAddr(actx)
	if err != nil {
		t.Fatal(err)
	}
	ts.url = "https://" + addr.String()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

func (ts *testServer) stop(t testing.TB) {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	for range 2 {
		if err := <-ts.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func (ts *testServer) client(tlsMax uint16) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.ca.Pool(), MaxVersion: tlsMax, MinVersion: tls.VersionTLS10},
	}}
}

func allowAll() Admitter {
	return AdmitFunc(func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Allowed: true}
	})
}

func TestServerTLSAndHealth(t *testing.T) {
	ts := startServer(t, allowAll(), 0)
	c := ts.client(0)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := c.Get(ts.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	resp, err := c.Post(ts.url+"/mutate", "application/json", bytes.NewReader(review(testUID)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(string(testUID))) || !bytes.Contains(body, []byte(`"allowed":true`)) {
		t.Errorf("/mutate answered %s", body)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v", resp.TLS)
	}
	if _, err := ts.client(tls.VersionTLS11).Get(ts.url + "/healthz"); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
}

func TestServerServesReloadedCertificate(t *testing.T) {
	ts := startServer(t, allowAll(), 0)
	serial := func() string {
		conn, err := tls.Dial("tcp", ts.url[len("https://"):], &tls.Config{RootCAs: ts.ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	certPEM, keyPEM, err := ts.ca.Issue("injector", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := testcert.WritePair(ts.dir, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ts.watch.Updated():
	case <-time.After(10 * time.Second):
		t.Fatal("certificate not reloaded")
	}
	if after := serial(); after == before || after != ts.watch.Leaf().SerialNumber.String() {
		t.Errorf("serial before %s, after %s, watcher %s", before, after, ts.watch.Leaf().SerialNumber)
	}
}

// TestServerDrains: cancellation (SIGTERM in main) makes the server not
// ready, and a request already in flight still gets its answer.
func TestServerDrains(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	slow := AdmitFunc(func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		close(entered)
		<-release
		return &admissionv1.AdmissionResponse{Allowed: true}
	})
	ts := startServer(t, slow, 300*time.Millisecond)
	c := ts.client(0)
	type result struct {
		body []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := c.Post(ts.url+"/mutate", "application/json", bytes.NewReader(review(testUID)))
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{b, err}
	}()
	<-entered
	ts.cancel()
	deadline := time.Now().Add(5 * time.Second)
	for ts.server.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("still ready after cancellation")
		}
		time.Sleep(time.Millisecond)
	}
	// during ShutdownDelay it still serves, and says it is not ready
	resp, err := ts.client(0).Get(ts.url + "/readyz")
	if err != nil {
		t.Fatalf("readyz during shutdown delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz during shutdown: %d", resp.StatusCode)
	}
	close(release)
	r := <-got
	if r.err != nil || !bytes.Contains(r.body, []byte(`"allowed":true`)) {
		t.Fatalf("in-flight request: %v %s", r.err, r.body)
	}
	for range 2 {
		if err := <-ts.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	ts.cancel = nil
	if _, err := c.Get(ts.url + "/healthz"); err == nil {
		t.Error("served after Run returned")
	}
}

func TestMetricsServer(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	ms := &MetricsServer{Addr: "127.0.0.1:0", Metrics: m.Handler(), Ready: func() bool { return false }, Log: discard()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ms.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 503} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
