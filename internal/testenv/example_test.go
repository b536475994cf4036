package testenv_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credlet/credlet/internal/testenv"
)

// A package whose tests need Vault and a kube-apiserver starts them once in
// its TestMain; each test then calls testenv.NeedServers(t) first.
func ExampleMain() {
	var (
		m     *testing.M // TestMain's argument
		vault *testenv.Vault
		kube  *testenv.Kube
	)
	// func TestMain(m *testing.M) {
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		var err error
		if vault, err = s.StartVault(ctx); err != nil {
			return err
		}
		if kube, err = s.StartKube(ctx); err != nil {
			return err
		}
		return vault.ConfigureKubernetesAuth(kube, "")
	})
	// }
}

// Cut a client off from its server, then let it through again.
func ExampleStartProxy() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "pong")
	}))
	defer srv.Close()

	p, err := testenv.StartProxy(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		panic(err)
	}
	defer p.Close()
	get := func() string {
		resp, err := http.Get(p.URL())
		if err != nil {
			return "connection failed"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	fmt.Println(get())
	p.Cut()
	fmt.Println(get())
	p.Restore()
	fmt.Println(get())
	// Output:
	// pong
	// connection failed
	// pong
}
