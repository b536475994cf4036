package vault

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/metrics"
)

// DefaultTimeout bounds every request to Vault when ClientConfig.Timeout is 0.
const DefaultTimeout = 5 * time.Second

// ClientConfig configures NewClient. The zero value talks to $VAULT_ADDR
// (trusting $VAULT_CACERT) with a 5 s request timeout.
type ClientConfig struct {
	Addr       string         // Vault address; empty: $VAULT_ADDR, else https://127.0.0.1:8200
	CACertFile string         // PEM bundle to trust; empty: $VAULT_CACERT, else the system roots
	Timeout    time.Duration  // per request, including reading the response; 0: DefaultTimeout
	Metrics    *metrics.Agent // optional: feeds VaultRequestDuration{op}
	Observer   Observer       // optional: called after every request (tests count requests with it)
}

// ErrConfig is wrapped by every NewClient error caused by the configuration.
var ErrConfig = errors.New("vault client configuration")

// NewClient returns the API client every part of the agent shares. Retries
// inside the client are off (MaxRetries 0): the lease manager and the
// sources own retrying, with backoff. The client starts without a token,
// even if $VAULT_TOKEN is set: the lease manager sets it after logging in.
func NewClient(cfg ClientConfig) (*api.Client, error) {
	conf := api.DefaultConfig() // reads VAULT_ADDR, VAULT_CACERT, ...
	if conf.Error != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, conf.Error)
	}
	if cfg.Addr != "" {
		conf.Address = cfg.Addr
	}
	if err := checkAddr(conf.Address); err != nil {
		return nil, err
	}
	if cfg.CACertFile != "" {
		if err := conf.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACertFile}); err != nil {
			return nil, fmt.Errorf("%w: CA certificate %s: %w", ErrConfig, cfg.CACertFile, err)
		}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	conf.Timeout = timeout
	conf.MaxRetries = 0
	conf.HttpClient.Timeout = timeout
	base, ok := conf.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected transport %T", ErrConfig, conf.HttpClient.Transport)
	}
	// Plain bodies: a gzip reader would keep plaintext in its window.
	base.DisableCompression = true
	base.ResponseHeaderTimeout = timeout
	conf.HttpClient.Transport = &transport{base: base, metrics: cfg.Metrics, observer: cfg.Observer}

	c, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.ClearToken()
	return c, nil
}

func checkAddr(addr string) error {
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: address %q: want http(s)://HOST[:PORT]", ErrConfig, addr)
	}
	return nil
}
