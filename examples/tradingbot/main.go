// Command tradingbot is credlet's example trading bot. It reads its
// exchange credentials from the credlet agent in its pod over the Unix
// socket (agent/client), switches to each new version the moment it is
// rotated, and uses the key only to sign a fake order locally: nothing is
// sent anywhere and no value is ever printed.
//
//	CREDLET_SOCKET=/credlet/run/agent.sock tradingbot --credential exchange
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/credlet/credlet/agent/client"
)

func main() {
	socket := flag.String("socket", os.Getenv("CREDLET_SOCKET"), "agent socket (default $CREDLET_SOCKET, else /credlet/run/agent.sock)")
	name := flag.String("credential", envOr("TRADINGBOT_CREDENTIAL", "exchange"), "credential set to use")
	keyField := flag.String("key-field", "api_key", "field holding the API key")
	secretField := flag.String("secret-field", "api_secret", "field holding the signing secret")
	every := flag.Duration("order-every", 2*time.Second, "how often to sign a fake order")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := &bot{name: *name, keyField: *keyField, secretField: *secretField, out: os.Stdout}
	if err := b.run(ctx, client.New(*socket, client.WithLogger(log), client.WithBackoff(200*time.Millisecond, 5*time.Second)), *every); err != nil {
		fmt.Fprintln(os.Stderr, "tradingbot:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// bot holds the signer for the credential version in use.
type bot struct {
	name, keyField, secretField string
	out                         io.Writer

	mu     sync.RWMutex
	signer *signer
}

// signer signs orders with one credential version.
type signer struct {
	version int
	apiKey  string
	secret  []byte
}

func (b *bot) run(ctx context.Context, c *client.Client, every time.Duration) error {
	fmt.Fprintf(b.out, "tradingbot: waiting for credential %q from the agent\n", b.name)
	// The first Get fails fast with a clear message when this process is
	// not allowed or the set does not exist; Watch would retry forever.
	first, err := c.Get(ctx, b.name)
	switch {
	case errors.Is(err, client.ErrForbidden):
		return fmt.Errorf("the agent refuses this process (uid %d): run as the app's user or allow it with --allow-uid", os.Getuid())
	case errors.Is(err, client.ErrNotFound):
		return fmt.Errorf("the agent has no credential set %q", b.name)
	case err != nil && ctx.Err() != nil:
		return nil
	case err != nil:
		return err
	}
	b.use(first)

	updates := c.Watch(ctx, b.name)
	tick := time.NewTicker(every)
	defer tick.Stop()
	order := 0
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(b.out, "tradingbot: stopping")
			return nil
		case cred, ok := <-updates:
			if !ok {
				fmt.Fprintln(b.out, "tradingbot: stopping")
				return nil
			}
			b.use(cred)
		case <-tick.C:
			order++
			b.placeOrder(order)
		}
	}
}

// use switches to a credential version; orders in flight keep the signer
// they started with.
func (b *bot) use(cred *client.Credential) {
	key, ok1 := cred.Field(b.keyField)
	secret, ok2 := cred.Field(b.secretField)
	if !ok1 || !ok2 {
		fmt.Fprintf(b.out, "tradingbot: version %d of %s lacks %s or %s (has %v); keeping version %d\n",
			cred.Version, b.name, b.keyField, b.secretField, cred.FieldNames(), b.version())
		return
	}
	b.mu.Lock()
	prev := b.signer
	b.signer = &signer{version: cred.Version, apiKey: key, secret: []byte(secret)}
	b.mu.Unlock()
	if prev == nil {
		fmt.Fprintf(b.out, "tradingbot: using %s version %d (fields %v)\n", b.name, cred.Version, cred.FieldNames())
		return
	}
	if prev.version != cred.Version {
		fmt.Fprintf(b.out, "tradingbot: now using %s version %d (was %d), no restart\n", b.name, cred.Version, prev.version)
		clear(prev.secret)
	}
}

func (b *bot) version() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.signer == nil {
		return 0
	}
	return b.signer.version
}

// placeOrder signs a fake order the way exchanges' REST APIs want it
// (HMAC-SHA256 over the request) and "sends" it nowhere.
func (b *bot) placeOrder(n int) {
	b.mu.RLock()
	s := b.signer
	b.mu.RUnlock()
	if s == nil {
		return
	}
	body := "symbol=FAKEUSDT&side=BUY&type=LIMIT&quantity=1&price=1.00&timestamp=" + strconv.FormatInt(time.Now().UnixMilli(), 10)
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(body))
	sig := hex.EncodeToString(mac.Sum(nil))
	_ = s.apiKey // would go in the X-API-KEY header
	fmt.Fprintf(b.out, "tradingbot: signed fake order #%d with %s version %d (signature %s…, not sent)\n", n, b.name, s.version, sig[:8])
}
