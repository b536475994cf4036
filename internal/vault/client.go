package vault

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/metrics"
)

// DefaultTimeout bounds every request to Vault when ClientConfig.Timeout is 0.
const DefaultTimeout = 5 * time.Second

// LoginTimeout bounds a login (the lease manager's, on a client clone):
// while a fleet starts at once Vault takes seconds per login (p99 8 s for
// 300 agents in make bench's login storm), and a login given up at 5 s is
// sent again, which doubled the logins Vault had to answer.
const LoginTimeout = 30 * time.Second

// ClientConfig configures NewClient. The zero value talks to $VAULT_ADDR
// (trusting $VAULT_CACERT) with a 5 s request timeout.
type ClientConfig struct {
	Addr       string         // Vault address; empty: $VAULT_ADDR, else https://127.0.0.1:8200
	CACertFile string         // PEM bundle to trust; empty: $VAULT_CACERT, else the system roots
	Timeout    time.Duration  // per request, including reading the response; 0: DefaultTimeout
	MaxRetries int            // retries inside the client (5xx, 429); 0: none, the caller's loops retry
	Metrics    *metrics.Agent // feeds VaultRequestDuration{op}; nil: a private set nobody reads
	Observer   Observer       // optional: called after every request (tests count requests with it)
}

// ErrConfig is wrapped by every NewClient error caused by the configuration.
var ErrConfig = errors.New("vault client configuration")

// configError is a NewClient error: Problem says what is wrong without the
// ErrConfig prefix, for callers that name the flag themselves.
type configError struct{ problem error }

func (e *configError) Error() string        { return ErrConfig.Error() + ": " + e.problem.Error() }
func (e *configError) Unwrap() error        { return e.problem }
func (e *configError) Is(target error) bool { return target == ErrConfig }

func configErr(format string, args ...any) error {
	return &configError{problem: fmt.Errorf(format, args...)}
}

// ConfigProblem returns a NewClient error's problem without the ErrConfig
// prefix (the whole message for any other error).
func ConfigProblem(err error) string {
	var ce *configError
	if errors.As(err, &ce) {
		return ce.problem.Error()
	}
	return err.Error()
}

// NewClient returns an API client: the one every part of the agent shares
// (MaxRetries 0: the lease manager and the sources own retrying, with
// backoff), or the operator CLI's (a longer timeout, a few retries). The client starts without a token,
// even if $VAULT_TOKEN is set: the lease manager sets it after logging in.
func NewClient(cfg ClientConfig) (*api.Client, error) {
	conf := api.DefaultConfig() // reads VAULT_ADDR, VAULT_CACERT, ...
	if conf.Error != nil {
		return nil, configErr("%w", conf.Error)
	}
	if cfg.Addr != "" {
		conf.Address = cfg.Addr
	}
	if err := checkAddr(conf.Address); err != nil {
		return nil, err
	}
	if cfg.CACertFile != "" {
		if err := conf.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACertFile}); err != nil {
			return nil, configErr("CA certificate %s: %w", cfg.CACertFile, err)
		}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	// The per-request bound is the client's timeout (a context deadline
	// on every call); the transport's own bounds leave room for a clone
	// with a longer one, as logins have.
	conf.Timeout = timeout
	conf.MaxRetries = max(cfg.MaxRetries, 0)
	conf.HttpClient.Timeout = max(timeout, LoginTimeout)
	base, ok := conf.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, configErr("unexpected transport %T", conf.HttpClient.Transport)
	}
	// Plain bodies: a gzip reader would keep plaintext in its window.
	base.DisableCompression = true
	base.ResponseHeaderTimeout = max(timeout, LoginTimeout)
	m := cfg.Metrics
	if m == nil {
		m = metrics.New() // a private set nobody reads: the transport never checks for nil
	}
	conf.HttpClient.Transport = &transport{base: base, metrics: m, observer: cfg.Observer}

	c, err := api.NewClient(conf)
	if err != nil {
		return nil, configErr("%w", err)
	}
	c.ClearToken()
	return c, nil
}

func checkAddr(addr string) error {
	if err := credspec.CheckVaultAddr(addr); err != nil {
		return configErr("address: %w", err)
	}
	return nil
}
