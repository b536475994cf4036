package vault_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault"
)

var tv *testenv.Vault

func TestMain(m *testing.M) { testenv.MainVault(m, &tv) }

func TestNewClientConfig(t *testing.T) {
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:8299")
	t.Setenv("VAULT_TOKEN", "FAKE-env-token")
	t.Setenv("VAULT_MAX_RETRIES", "5")
	tests := []struct {
		name     string
		cfg      vault.ClientConfig
		wantAddr string
		wantTO   time.Duration
		wantErr  bool
	}{
		{name: "env address, defaults", cfg: vault.ClientConfig{}, wantAddr: "http://127.0.0.1:8299", wantTO: vault.DefaultTimeout},
		{name: "explicit address and timeout", cfg: vault.ClientConfig{Addr: "https://127.0.0.1:8200", Timeout: time.Second}, wantAddr: "https://127.0.0.1:8200", wantTO: time.Second},
		{name: "no scheme", cfg: vault.ClientConfig{Addr: "127.0.0.1:8200"}, wantErr: true},
		{name: "ftp", cfg: vault.ClientConfig{Addr: "ftp://127.0.0.1"}, wantErr: true},
		{name: "missing CA file", cfg: vault.ClientConfig{Addr: "https://127.0.0.1:8200", CACertFile: "/nonexistent/ca.pem"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := vault.NewClient(tt.cfg)
			if tt.wantErr {
				if !errors.Is(err, vault.ErrConfig) {
					t.Fatalf("err = %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Address() != tt.wantAddr {
				t.Errorf("address %q, want %q", c.Address(), tt.wantAddr)
			}
			if c.ClientTimeout() != tt.wantTO {
				t.Errorf("timeout %v, want %v", c.ClientTimeout(), tt.wantTO)
			}
			if c.Token() != "" {
				t.Error("client picked up $VAULT_TOKEN")
			}
			if n := c.CloneConfig().MaxRetries; n != 0 {
				t.Errorf("MaxRetries = %d, want 0", n)
			}
		})
	}
}

// TestNoRetriesInsideClient: a 503 reaches the caller after one request.
func TestNoRetriesInsideClient(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"errors":["Vault is sealed"]}`))
	}))
	defer srv.Close()
	c, err := vault.NewClient(vault.ClientConfig{Addr: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("FAKE-token")
	_, err = c.Logical().ReadWithContext(context.Background(), "secret/metadata/x")
	if err == nil || vault.IsPermanent(err) || vault.StatusCode(err) != 503 {
		t.Fatalf("err = %v: want a transient 503", err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("server saw %d requests, want 1 (no retries)", n)
	}
}

// TestTimeout: a server that accepts and never answers fails the request
// after the client timeout, as a transient error.
func TestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	c, err := vault.NewClient(vault.ClientConfig{Addr: "http://" + ln.Addr().String(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("FAKE-token")
	start := time.Now()
	_, err = c.Logical().ReadWithContext(context.Background(), "secret/metadata/x")
	d := time.Since(start)
	if err == nil || vault.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient timeout", err)
	}
	if d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("request took %v, want about the 300ms timeout", d)
	}
}

// TestObservesRequests times real requests by operation.
func TestObservesRequests(t *testing.T) {
	testenv.NeedServers(t)
	m := metrics.New()
	var mu sync.Mutex
	seen := map[string][]int{}
	c, err := vault.NewClient(vault.ClientConfig{Addr: tv.Addr, Metrics: m, Observer: func(op string, status int, d time.Duration) {
		mu.Lock()
		seen[op] = append(seen[op], status)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(tv.RootToken)
	ctx := context.Background()
	if _, err := c.Logical().WriteWithContext(ctx, "secret/data/vaulttest/observe", map[string]any{"data": map[string]any{"k": "FAKE-v"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().ReadWithContext(ctx, "secret/metadata/vaulttest/observe"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().ReadWithContext(vault.WithOp(ctx, vault.OpLookup), "secret/metadata/vaulttest/observe"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := seen[vault.OpKVMetadata]; len(got) != 1 || got[0] != 200 {
		t.Errorf("kv_metadata observations %v, want one 200", got)
	}
	if got := seen[vault.OpLookup]; len(got) != 1 {
		t.Errorf("WithOp label not used: lookup observations %v", got)
	}
	if n := histCount(t, m, vault.OpKVMetadata); n != 1 {
		t.Errorf("histogram count for kv_metadata = %d, want 1", n)
	}
}

func histCount(t *testing.T, m *metrics.Agent, op string) uint64 {
	t.Helper()
	h, err := m.VaultRequestDuration.GetMetricWithLabelValues(op)
	if err != nil {
		t.Fatal(err)
	}
	var d dto.Metric
	if err := h.(interface{ Write(*dto.Metric) error }).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}
