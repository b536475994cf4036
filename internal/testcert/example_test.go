package testcert_test

import (
	"crypto/tls"
	"fmt"

	"github.com/credlet/credlet/internal/testcert"
)

func ExampleCA_Issue() {
	ca, err := testcert.NewCA("example CA")
	if err != nil {
		fmt.Println(err)
		return
	}
	certPEM, keyPEM, err := ca.Issue("injector", "127.0.0.1", "injector.example.test")
	if err != nil {
		fmt.Println(err)
		return
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	fmt.Println(err, pair.Leaf.IPAddresses, pair.Leaf.DNSNames)
	// Output: <nil> [127.0.0.1] [injector.example.test]
}
