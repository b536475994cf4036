package lease_test

import (
	"context"
	"log"
	"log/slog"
	"os"

	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
)

func ExampleManager() {
	ctx := context.Background()
	c, err := vault.NewClient(vault.ClientConfig{Addr: "https://vault.example.internal:8200"})
	if err != nil {
		log.Fatal(err)
	}
	m := lease.New(c, auth.Kubernetes("zerodha-bot", "kubernetes", "/var/run/secrets/credlet/token"), lease.Options{
		RenewAt: 0.8,
		Logger:  slog.New(slog.NewJSONHandler(os.Stderr, nil)),
		Metrics: metrics.New(),
	})
	go func() { _ = m.Run(ctx) }() // in the agent: one errgroup member
	if err := m.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	// c now carries a token; sources share c and call m.Invalidate on a 403.
}
