package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testcert"
	"github.com/credlet/credlet/internal/testenv"
)

// TestBinaryStopsOnSIGTERM runs the credlet-injector binary as a kubelet
// would and stops it with SIGTERM: it answers until then, drains, and exits
// 0. A bad flag exits 2 with one line.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	bin := buildInjector(t)
	var stderr bytes.Buffer
	bad := exec.Command(bin, "--tls-cert-file=x", "--tls-key-file=y", "--sidecar=native")
	bad.Stderr = &stderr
	var exit *exec.ExitError
	if err := bad.Run(); !errors.As(err, &exit) || exit.ExitCode() != 2 || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
		t.Errorf("bad flag: %v, stderr %q", err, stderr.String())
	}

	dir := t.TempDir()
	ca, err := testcert.NewCA("sigterm test CA")
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
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mport, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, fmt.Sprintf("--listen=127.0.0.1:%d", port), fmt.Sprintf("--metrics-listen=127.0.0.1:%d", mport),
		"--tls-cert-file="+cf, "--tls-key-file="+kf, "--agent-image=registry.example.test/credlet-agent:v1")
	logPath := filepath.Join(dir, "injector.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.TLSClientConfig()}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("exit after SIGTERM: %v\n%s", err, b)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("still running 30s after SIGTERM")
	}
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), `"msg":"server stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", b)
	}
}
