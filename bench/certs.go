package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/credlet/credlet/internal/testcert"
)

// testCA is a throwaway CA for the webhook servers' TLS.
type testCA struct{ *testcert.CA }

func newCA() (*testCA, error) {
	ca, err := testcert.NewCA("credlet-bench CA (fake)")
	if err != nil {
		return nil, err
	}
	return &testCA{ca}, nil
}

// writeLeaf issues a serving certificate for 127.0.0.1 and writes
// tls.crt, tls.key and ca.crt into dir. serial is unused: testcert draws a
// random serial for every certificate.
func (ca *testCA) writeLeaf(dir string, _ int64) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := ca.Issue("127.0.0.1", "127.0.0.1", "localhost")
	if err != nil {
		return "", "", err
	}
	if certFile, keyFile, err = testcert.WritePair(dir, certPEM, keyPEM); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.PEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write ca.crt: %w", err)
	}
	return certFile, keyFile, nil
}

func (ca *testCA) tlsDialer(addr string) func() (net.Conn, error) {
	cfg := ca.TLSClientConfig()
	cfg.ServerName = "127.0.0.1"
	return func() (net.Conn, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", addr, cfg)
	}
}
