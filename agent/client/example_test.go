package client_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/credlet/credlet/agent/client"
)

// A trading bot reads its broker credentials from the agent in its pod and
// switches to each new version as it is rotated.
func Example() {
	c := client.New(os.Getenv("CREDLET_SOCKET")) // "" means client.DefaultSocket
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cred, err := c.Get(ctx, "zerodha")
	switch {
	case errors.Is(err, client.ErrForbidden):
		log.Fatal("this container's user may not read credentials: check credlet.io/uid")
	case err != nil:
		log.Fatal(err)
	}
	apiKey, _ := cred.Field("api_key")
	_ = apiKey      // log.Print(cred) would print [REDACTED] for the values
	log.Print(cred) // credential zerodha v3 fields [access_token api_key api_secret] values [REDACTED]

	// During a key overlap the broker may still expect the old key: the
	// agent keeps the version before the current one after a rotation.
	if old, err := c.GetPrevious(ctx, "zerodha"); err == nil {
		log.Printf("falling back to version %d", old.Version)
	}

	// Each new version, within milliseconds of its commit, until ctx ends
	// or an error that retrying cannot cure (then the loop ends too).
	onError := client.OnError(func(err error) {
		if errors.Is(err, client.ErrWatchStopped) {
			log.Printf("no more updates: %v", err)
		}
	})
	for cred := range c.Watch(context.Background(), "zerodha", onError) {
		log.Printf("rotated to version %d", cred.Version)
	}
}
