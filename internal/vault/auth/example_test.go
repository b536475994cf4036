package auth_test

import (
	"context"
	"log"

	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
)

func ExampleKubernetes() {
	c, err := vault.NewClient(vault.ClientConfig{Addr: "https://vault.example.internal:8200"})
	if err != nil {
		log.Fatal(err)
	}
	m := auth.Kubernetes("zerodha-bot", "kubernetes", "/var/run/secrets/credlet/token")
	s, err := m.Login(context.Background(), c)
	if err != nil {
		log.Fatalf("login (permanent: %v): %v", auth.IsPermanent(err), err)
	}
	log.Printf("token accessor %s, ttl %ds", s.Auth.Accessor, s.Auth.LeaseDuration)
}

func ExampleJWT() {
	c, err := vault.NewClient(vault.ClientConfig{Addr: "https://vault.example.internal:8200"})
	if err != nil {
		log.Fatal(err)
	}
	m := auth.JWT("credlet-partner", "jwt", "/var/run/secrets/credlet/token")
	s, err := m.Login(context.Background(), c)
	if err != nil {
		log.Fatalf("login (permanent: %v): %v", auth.IsPermanent(err), err)
	}
	log.Printf("token accessor %s, ttl %ds", s.Auth.Accessor, s.Auth.LeaseDuration)
}
