package injectorcmd_test

import (
	"context"
	"fmt"
	"os"

	"github.com/credlet/credlet/internal/injectorcmd"
)

// Main is all injector/main.go calls; a bad flag exits 2 with one line.
func ExampleMain() {
	code := injectorcmd.Main(context.Background(), []string{"--tls-cert-file=tls.crt", "--tls-key-file=tls.key", "--log-level=loud"}, os.Stdout, os.Stdout)
	fmt.Println("exit", code)
	// Output:
	// credlet-injector: invalid command line: --log-level "loud": allowed debug, info, warn, error
	// exit 2
}
