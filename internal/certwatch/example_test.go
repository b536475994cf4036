package certwatch_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"

	"github.com/credlet/credlet/internal/certwatch"
	"github.com/credlet/credlet/internal/testcert"
)

func Example() {
	dir, _ := os.MkdirTemp("", "certwatch")
	defer os.RemoveAll(dir)
	ca, _ := testcert.NewCA("example CA")
	certPEM, keyPEM, _ := ca.Issue("injector.example.test", "injector.example.test")
	certFile, keyFile, _ := testcert.WritePair(dir, certPEM, keyPEM)

	w, err := certwatch.New(certFile, keyFile, certwatch.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }() // reloads on change until ctx ends

	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.GetCertificate}
	c, _ := cfg.GetCertificate(nil)
	fmt.Println(c.Leaf.DNSNames)
	// Output: [injector.example.test]
}
