package fleet_test

import (
	"context"
	"fmt"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/fleet"
	"github.com/credlet/credlet/internal/vault/auth"
)

// A hundred simulated agents, each logging in with its own projected
// token through Kubernetes auth and polling one set every 10 s, started
// over one interval as a fleet's pods would be.
func Example() {
	cred, err := credspec.Parse("zerodha=secret/partners/acme/zerodha")
	if err != nil {
		panic(err)
	}
	var agents []fleet.Agent
	for i := range 100 {
		token := fmt.Sprintf("/tmp/fleet/%d/token", i) // a TokenRequest token of the agent's own ServiceAccount
		agents = append(agents, fleet.Agent{Name: fmt.Sprint(i), Creds: []credspec.Credential{cred},
			Login: auth.Kubernetes("credlet-partner", "kubernetes", token)})
	}
	f, err := fleet.New(agents, fleet.Options{Addr: "http://127.0.0.1:8200", Refresh: 10 * time.Second, Stagger: 10 * time.Second})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() { _ = f.Run(ctx) }()
	if err := f.WaitVersion(ctx, 1); err != nil {
		fmt.Println(err)
	}
}
