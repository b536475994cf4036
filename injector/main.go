// Command credlet-injector is credlet's mutating admission webhook: it adds
// the credlet agent, its volumes and the app containers' mounts to every pod
// labelled credlet.io/inject=true. See internal/injectorcmd for the flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/credlet/credlet/internal/injectorcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := injectorcmd.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
