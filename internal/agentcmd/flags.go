package agentcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/cliflag"
	"github.com/credlet/credlet/internal/credspec"
)

// errUsage marks a bad flag or value: the process exits 2.
var errUsage = errors.New("usage")

// usageErr is a bad flag or value; its message is the one line the user
// sees. It matches errUsage and unwraps to the cause it formats with %w.
type usageErr struct{ err error }

func (e *usageErr) Error() string        { return e.err.Error() }
func (e *usageErr) Unwrap() error        { return e.err }
func (e *usageErr) Is(target error) bool { return target == errUsage }

// usageError formats a one-line usage error.
func usageError(format string, args ...any) error {
	return &usageErr{err: fmt.Errorf(format, args...)}
}

// RunConfig is the typed configuration of `credlet-agent run`.
type RunConfig struct {
	VaultAddr       string
	VaultCACert     string
	Auth            string
	AuthMount       string
	Role            string
	TokenFile       string
	VaultTokenFile  string
	RoleIDFile      string
	SecretIDFile    string
	SecretIDWrapped bool
	Credentials     []credspec.Credential
	Refresh         time.Duration
	RenewAt         float64
	SecretsDir      string
	FileUID         int
	FileGID         int
	FileMode        os.FileMode
	Socket          string
	AllowUIDs       []uint32
	AllowGIDs       []uint32
	VerifyURL       string
	Notify          string
	AuditFile       string
	Listen          string
	Once            bool
	LogLevel        string
	LogFormat       string
	Source          string
	MasterKeyFile   string
}

// Auth methods.
var authMethods = []string{"kubernetes", "jwt", "approle", "token"}

// credentialList is the repeatable --credential flag.
type credentialList struct{ c *[]credspec.Credential }

func (l credentialList) String() string {
	if l.c == nil {
		return ""
	}
	s := make([]string, len(*l.c))
	for i, c := range *l.c {
		s[i] = c.String()
	}
	return strings.Join(s, "\n")
}

func (l credentialList) Set(v string) error {
	// The environment form holds one spec per line.
	for spec := range strings.Lines(v) {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		c, err := credspec.Parse(spec)
		if err != nil {
			return err
		}
		for _, have := range *l.c {
			if have.Name == c.Name {
				return fmt.Errorf("credential %q given twice", c.Name)
			}
		}
		*l.c = append(*l.c, c)
	}
	return nil
}

// idList is a comma-separated list of numeric uids or gids.
type idList struct{ ids *[]uint32 }

func (l idList) String() string {
	if l.ids == nil {
		return ""
	}
	s := make([]string, len(*l.ids))
	for i, id := range *l.ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

func (l idList) Set(v string) error {
	*l.ids = (*l.ids)[:0]
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a numeric id (want a comma list like 1000,1001)", f)
		}
		*l.ids = append(*l.ids, uint32(n))
	}
	return nil
}

// fileMode parses an octal mode such as 0400.
type fileMode struct{ m *os.FileMode }

func (f fileMode) String() string {
	if f.m == nil {
		return "0400"
	}
	return fmt.Sprintf("%#o", uint32(*f.m))
}

func (f fileMode) Set(v string) error {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 {
		return fmt.Errorf("%q is not an octal file mode (want e.g. 0400 or 0440)", v)
	}
	if n&0o022 != 0 {
		return fmt.Errorf("%q lets group or others write; allowed modes have no write bit beyond the owner's (e.g. 0400, 0440)", v)
	}
	*f.m = os.FileMode(n)
	return nil
}

func newRunFlags(cfg *RunConfig, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.VaultAddr, "vault-addr", getenv("VAULT_ADDR"), "Vault address")
	fs.StringVar(&cfg.VaultCACert, "vault-ca-cert", getenv("VAULT_CACERT"), "PEM bundle to trust for Vault")
	fs.StringVar(&cfg.Auth, "auth", "kubernetes", "auth method: kubernetes, jwt, approle or token (dev only)")
	fs.StringVar(&cfg.AuthMount, "auth-mount", "", "auth mount path (default: the method's name)")
	fs.StringVar(&cfg.Role, "role", "", "Kubernetes or jwt auth role")
	fs.StringVar(&cfg.TokenFile, "token-file", "/var/run/secrets/credlet/token", "projected service account token, re-read at every login")
	fs.StringVar(&cfg.VaultTokenFile, "vault-token-file", "", "file holding a Vault token for --auth token (dev only; else VAULT_TOKEN or ~/.vault-token)")
	fs.StringVar(&cfg.RoleIDFile, "role-id-file", "", "AppRole role_id file")
	fs.StringVar(&cfg.SecretIDFile, "secret-id-file", "", "AppRole secret_id file")
	fs.BoolVar(&cfg.SecretIDWrapped, "secret-id-wrapped", false, "the secret_id file holds a response-wrapping token")
	fs.Var(credentialList{&cfg.Credentials}, "credential", "NAME=KV_PATH[;transit=KEY][;context=CTX][;fields=a,b][;format=files|json|env][;optional] (repeatable)")
	fs.DurationVar(&cfg.Refresh, "refresh", 10*time.Second, "metadata poll interval, jittered ±10%")
	fs.Float64Var(&cfg.RenewAt, "renew-at", 0.8, "fraction of the token TTL at which it is renewed")
	fs.StringVar(&cfg.SecretsDir, "secrets-dir", "/credlet/secrets", "tmpfs root for files; empty disables files")
	fs.IntVar(&cfg.FileUID, "file-uid", -1, "owner of written files (default: the agent's own uid)")
	fs.IntVar(&cfg.FileGID, "file-gid", -1, "group of written files (default: the agent's own gid)")
	cfg.FileMode = 0o400
	fs.Var(fileMode{&cfg.FileMode}, "file-mode", "mode of written files")
	fs.StringVar(&cfg.Socket, "socket", "/credlet/run/agent.sock", "Unix socket; empty disables it")
	fs.Var(idList{&cfg.AllowUIDs}, "allow-uid", "comma list of peer uids allowed to read (default: the agent's own uid)")
	fs.Var(idList{&cfg.AllowGIDs}, "allow-gid", "comma list of peer gids allowed to read")
	fs.StringVar(&cfg.VerifyURL, "verify-url", "", "blue/green check: POST of the candidate version; 2xx commits it (loopback or unix: only)")
	fs.StringVar(&cfg.Notify, "notify", "", "after each commit: signal:SIGHUP:PROCESS_NAME or http:URL")
	fs.StringVar(&cfg.AuditFile, "audit-file", "-", "audit log destination (- is stdout)")
	fs.StringVar(&cfg.Listen, "listen", ":9102", "address for /metrics, /healthz, /readyz; empty disables it")
	fs.BoolVar(&cfg.Once, "once", false, "fetch every credential, write files, exit 0 (classic init container)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "json or text")
	fs.StringVar(&cfg.Source, "source", "vault", "vault, or file:PATH for the embedded encrypted file source (local development)")
	fs.StringVar(&cfg.MasterKeyFile, "master-key-file", "", "AES-256 key file for --source file:PATH")
	return fs
}

// parseFlags parses args, then fills every flag not given on the command
// line from CREDLET_<NAME> (dashes as underscores). Any problem is one line
// naming the flag and what is allowed.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := cliflag.Parse(fs, args, "credlet-agent "+fs.Name()); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("%w", err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v, ok := lookup(getenv, env); ok {
			if e := f.Value.Set(v); e != nil {
				err = usageError("%s (from %s): %v", "--"+f.Name, env, e)
			}
		}
	})
	return err
}

// EnvName is the environment variable that feeds a flag.
func EnvName(flagName string) string {
	return "CREDLET_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func lookup(getenv func(string) string, k string) (string, bool) {
	v := getenv(k)
	return v, v != ""
}

// validate checks combinations the flag parsers can't.
func (c *RunConfig) validate() error {
	switch c.Auth {
	case "kubernetes":
		if c.Role == "" && !c.fileSource() {
			return usageError("--role is required with --auth kubernetes")
		}
	case "jwt":
		if c.Role == "" {
			return usageError("--role is required with --auth jwt")
		}
	case "approle":
		if c.RoleIDFile == "" || c.SecretIDFile == "" {
			return usageError("--role-id-file and --secret-id-file are required with --auth approle")
		}
	case "token":
	default:
		return usageError("--auth %q: allowed %s", c.Auth, strings.Join(authMethods, ", "))
	}
	if c.AuthMount == "" {
		c.AuthMount = c.Auth
	}
	if len(c.Credentials) == 0 && !c.fileSource() {
		return usageError("--credential: at least one NAME=KV_PATH is required")
	}
	if c.Refresh < 100*time.Millisecond || c.Refresh > 24*time.Hour {
		return usageError("--refresh %s: allowed 100ms to 24h", c.Refresh)
	}
	if c.RenewAt < 0.1 || c.RenewAt > 0.95 {
		return usageError("--renew-at %g: allowed 0.1 to 0.95", c.RenewAt)
	}
	if !c.fileSource() && c.Source != "vault" {
		return usageError("--source %q: allowed vault or file:PATH", c.Source)
	}
	if c.fileSource() && c.MasterKeyFile == "" {
		return usageError("--master-key-file is required with --source file:PATH")
	}
	if !c.fileSource() && c.VaultAddr == "" {
		return usageError("--vault-addr (or VAULT_ADDR) is required")
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return usageError("--listen %q: want HOST:PORT or :PORT", c.Listen)
		}
	}
	if err := cliflag.CheckLog(c.LogLevel, c.LogFormat); err != nil {
		return usageError("%s", err)
	}
	if c.Once && c.SecretsDir == "" {
		return usageError("--once writes the files and exits, but --secrets-dir is empty (the socket is served only without --once)")
	}
	if c.SecretsDir == "" && c.Socket == "" {
		return usageError("--secrets-dir and --socket are both empty: nothing would deliver the credentials")
	}
	return nil
}

func (c *RunConfig) fileSource() bool { return strings.HasPrefix(c.Source, "file:") }
