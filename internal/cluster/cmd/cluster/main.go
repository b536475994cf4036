// Command cluster is `make cluster`: it starts the single-node cluster of
// package cluster in the foreground, with credlet's images imported, prints
// one line
//
//	ready: KUBECONFIG=... VAULT_ADDR=... VAULT_TOKEN=...
//
// once pods can run, applies nothing else, and stops everything on SIGINT or
// SIGTERM. The apiserver and Vault are reachable from this machine's
// loopback at the addresses in that line (forwarded into the run's network
// namespace).
//
// `cluster render` prints manifests/overlays/test rendered (kustomize's Go
// API) with a new serving certificate for the injector and its CA in the
// webhook, for `kubectl apply -f -` against that cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/credlet/credlet/internal/cluster"
)

func main() {
	verbose := flag.Bool("v", false, "print each start step")
	flag.Parse()
	if flag.Arg(0) == "render" {
		if err := render(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster render:", err)
			os.Exit(1)
		}
		return
	}
	// Two listeners on this machine's loopback: the apiserver and Vault.
	if err := cluster.Isolate(cluster.WithHostListeners(2)); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
	if err := run(*verbose); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(verbose bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root, err := cluster.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "credlet-cluster-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	archive, err := cluster.BuildImages(startCtx, root, work)
	if err != nil {
		return err
	}
	opts := cluster.Options{Archives: []string{archive}}
	if verbose {
		opts.Log = os.Stderr
	}
	c, err := cluster.Start(startCtx, opts)
	if err != nil {
		return err
	}
	defer c.Stop()
	lns, err := cluster.HostListeners()
	if err != nil {
		return err
	}
	kubeconfig, vaultAddr, err := c.ServeOnHost(lns[0], lns[1])
	if err != nil {
		return err
	}
	fmt.Printf("ready: KUBECONFIG=%s VAULT_ADDR=%s VAULT_TOKEN=%s\n", kubeconfig, vaultAddr, c.Vault.RootToken)
	fmt.Fprintf(os.Stderr, "cluster: logs in %s\n", filepath.Join(c.Dir, "logs"))
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "cluster: stopping")
	return nil
}

func render() error {
	root, err := cluster.ModuleRoot(context.Background())
	if err != nil {
		return err
	}
	objs, err := cluster.RenderCredlet(root)
	if err != nil {
		return err
	}
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		fmt.Printf("---\n%s", b)
	}
	return nil
}
