package main

import (
	"context"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// TestDemoFileSource is `make demo`: it builds the agent and the bot, and
// fails unless both apps follow a rotation and nothing leaks.
func TestDemoFileSource(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the whole demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, options{root: "../..", timeout: 90 * time.Second}); err != nil {
		t.Fatal(err)
	}
}

// TestDemoVault is `make demo-vault`, against the Vault binary from
// `make tools` (fails under CI when it is missing).
func TestDemoVault(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the whole demo")
	}
	bin := testenv.RequireBinary(t, testenv.BinVault)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, options{root: "../..", vault: bin, timeout: 90 * time.Second}); err != nil {
		t.Fatal(err)
	}
}
