package vault_test

import (
	"log"
	"time"

	"github.com/credlet/credlet/internal/metrics"
	"github.com/credlet/credlet/internal/vault"
)

func ExampleNewClient() {
	m := metrics.New()
	c, err := vault.NewClient(vault.ClientConfig{
		Addr:    "https://vault.example.internal:8200",
		Timeout: 5 * time.Second,
		Metrics: m, // credlet_vault_request_duration_seconds{op}
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = c // shared by the lease manager (which sets the token) and the sources
}
