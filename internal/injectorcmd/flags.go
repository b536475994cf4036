package injectorcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/cliflag"
)

// Options are the parsed flags.
type Options struct {
	Listen        string
	TLSCertFile   string
	TLSKeyFile    string
	AgentImage    string
	VaultAddr     string
	ConfigFile    string
	MetricsListen string
	LogLevel      string
	LogFormat     string
	ShutdownDelay time.Duration
	DrainTimeout  time.Duration
	CertPoll      time.Duration
	PatchCache    int
	Version       bool
}

// errUsage marks a bad command line (exit 2).
var errUsage = errors.New("invalid command line")

// ParseFlags parses args; the error names the flag and what is allowed.
func ParseFlags(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("credlet-injector", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by Main
	fs.StringVar(&o.Listen, "listen", ":8443", "HTTPS address for /mutate, /healthz, /readyz")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", "", "serving certificate (PEM), reloaded when it changes")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", "", "serving key (PEM), reloaded when it changes")
	fs.StringVar(&o.AgentImage, "agent-image", "", "credlet-agent image injected into pods (or defaults.agentImage in --config)")
	fs.StringVar(&o.VaultAddr, "vault-addr", "", "default Vault address for injected agents (or defaults.vaultAddr in --config)")
	fs.StringVar(&o.ConfigFile, "config", "", "YAML file: namespaces -> allowed KV path prefixes and defaults")
	fs.StringVar(&o.MetricsListen, "metrics-listen", ":9103", "plain HTTP address for /metrics, /healthz, /readyz")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", "json", "json or text")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", 0, "after SIGTERM, keep serving (not ready) this long before draining")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 20*time.Second, "how long to wait for in-flight requests on shutdown")
	fs.DurationVar(&o.CertPoll, "cert-poll", 10*time.Second, "how often to compare the certificate files besides watching them")
	fs.IntVar(&o.PatchCache, "patch-cache", 128, "patches remembered for byte-identical pods (a ReplicaSet's replicas); 0 disables")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	if err := cliflag.Parse(fs, args, "credlet-injector"); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "usage: credlet-injector --tls-cert-file FILE --tls-key-file FILE [flags]")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return o, err
		}
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if o.Version {
		return o, nil
	}
	if err := cliflag.CheckLog(o.LogLevel, o.LogFormat); err != nil {
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	if o.TLSCertFile == "" || o.TLSKeyFile == "" {
		return o, fmt.Errorf("%w: --tls-cert-file and --tls-key-file are required", errUsage)
	}
	for name, d := range map[string]time.Duration{"--shutdown-delay": o.ShutdownDelay, "--drain-timeout": o.DrainTimeout, "--cert-poll": o.CertPoll} {
		if d < 0 || (name == "--cert-poll" && d < time.Second) {
			return o, fmt.Errorf("%w: %s %s: allowed a duration >= %s", errUsage, name, d, map[bool]string{true: "1s", false: "0"}[name == "--cert-poll"])
		}
	}
	if o.PatchCache < 0 || o.PatchCache > 1<<16 {
		return o, fmt.Errorf("%w: --patch-cache %d: allowed 0 to 65536", errUsage, o.PatchCache)
	}
	if strings.TrimSpace(o.Listen) == "" {
		return o, fmt.Errorf("%w: --listen is required", errUsage)
	}
	return o, nil
}
