package injectorcmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testcert"
)

func TestParseFlags(t *testing.T) {
	req := []string{"--tls-cert-file=c", "--tls-key-file=k"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"minimal", req, ""},
		{"version needs nothing", []string{"--version"}, ""},
		{"no cert", []string{"--tls-key-file=k"}, "--tls-cert-file and --tls-key-file are required"},
		{"unknown flag", append(req, "--colour"), "unknown flag --colour (see credlet-injector --help)"},
		{"bad duration", append(req, "--drain-timeout=soon"), `--drain-timeout: "soon": parse error`},
		{"bad level", append(req, "--log-level=loud"), `--log-level "loud": allowed debug, info, warn, error`},
		{"bad format", append(req, "--log-format=xml"), `--log-format "xml": allowed json, text`},
		{"fast poll", append(req, "--cert-poll=10ms"), "--cert-poll 10ms: allowed a duration >= 1s"},
		{"negative drain", append(req, "--drain-timeout=-1s"), "--drain-timeout -1s"},
		{"negative cache", append(req, "--patch-cache=-1"), "--patch-cache -1: allowed 0 to 65536"},
		{"stray argument", append(req, "extra"), `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFlags(tt.args, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want usage error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMainExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"--bogus"}, &out, &errOut); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
	if lines := strings.Count(strings.TrimSpace(errOut.String()), "\n"); lines != 0 {
		t.Errorf("bad flag printed %d lines, want one: %q", lines+1, errOut.String())
	}
	if code := Main(context.Background(), []string{"-h"}, &out, &errOut); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	if !strings.Contains(errOut.String(), "--tls-cert-file") && !strings.Contains(errOut.String(), "-tls-cert-file") {
		t.Errorf("-h printed no usage: %q", errOut.String())
	}
	out.Reset()
	if code := Main(context.Background(), []string{"--version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "credlet-injector ") {
		t.Errorf("--version: exit %d, %q", code, out.String())
	}
	if code := Main(context.Background(), []string{"--tls-cert-file=/nonexistent", "--tls-key-file=/nonexistent", "--agent-image=x"}, &out, io.Discard); code != 1 {
		t.Errorf("missing cert: exit %d, want 1", code)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunServesAndStops runs the whole injector in-process: both servers
// answer, and cancelling (SIGTERM in main) stops it with exit code 0.
func TestRunServesAndStops(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA("injectorcmd test CA")
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue("injector", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := testcert.WritePair(dir, c, k)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("namespaces:\n  a:\n    allowedPaths: [secret/a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen, metrics := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var logs bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"--tls-cert-file=" + cf, "--tls-key-file=" + kf, "--config=" + cfgFile,
			"--agent-image=registry.example.test/credlet-agent:v1", "--vault-addr=https://vault.example.test:8200",
			"--listen=" + listen, "--metrics-listen=" + metrics, "--log-format=text"}, io.Discard, &syncWriter{buf: &logs})
	}()
	tr := &http.Transport{TLSClientConfig: ca.TLSClientConfig()}
	https := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := https.Get("https://" + listen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"credlet_injector_admissions_total", "credlet_injector_cert_not_after_timestamp_seconds"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after cancel; logs:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
}
