package source_test

import (
	"context"
	"log"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
)

func ExampleVault() {
	ctx := context.Background()
	cred, err := credspec.Parse("zerodha=secret/partners/acme/zerodha;transit=partners;context=acme;fields=api_key,api_secret")
	if err != nil {
		log.Fatal(err) // the agent exits 2 with this one line
	}
	st, err := store.New([]store.Declared{{Name: cred.Name}})
	if err != nil {
		log.Fatal(err)
	}
	c, err := vault.NewClient(vault.ClientConfig{Addr: "https://vault.example.internal:8200"})
	if err != nil {
		log.Fatal(err)
	}
	tokens := lease.New(c, auth.Kubernetes("zerodha-bot", "kubernetes", "/var/run/secrets/credlet/token"), lease.Options{})
	src := source.NewVault(c, cred, st, source.Options{Refresh: 10 * time.Second, Tokens: tokens})
	go func() { _ = tokens.Run(ctx) }()
	go func() { _ = src.Run(ctx) }()

	set, err := st.Wait(ctx, cred.Name, 0) // the first committed version
	if err != nil {
		log.Fatal(err)
	}
	defer set.Release()
	log.Printf("serving %s version %d", set.Name(), set.Version())
}
