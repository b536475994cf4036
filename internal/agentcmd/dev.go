package agentcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/filesource"
)

// The demo credential sets `credlet-agent dev` writes on first start. The
// values are fake on purpose; rotate them with `credlet-agent creds`.
var devSets = []struct {
	spec   string // how the agent delivers it
	fields []string
}{
	{"exchange=secret/demo/exchange;fields=api_key,api_secret;format=env", []string{"api_key", "api_secret"}},
	{"broker-oauth=secret/demo/broker-oauth;fields=refresh_token", []string{"refresh_token"}},
}

// devLayout is where `credlet-agent dev` keeps its files.
type devLayout struct {
	Dir, Key, Credentials, Secrets, Socket, Audit string
}

func newDevLayout(dir string) devLayout {
	return devLayout{
		Dir:         dir,
		Key:         filepath.Join(dir, "master.key"),
		Credentials: filepath.Join(dir, "credentials.enc"),
		Secrets:     filepath.Join(dir, "secrets"),
		Socket:      filepath.Join(dir, "run", "agent.sock"),
		Audit:       filepath.Join(dir, "audit.log"),
	}
}

// devFlags are the flags of credlet-agent dev.
type devFlags struct {
	dir, listen, notify, auditFile, logLevel, logFormat string
	keep                                                bool
	refresh                                             time.Duration
}

// devCommand: credlet-agent dev. Runs the agent on the embedded file source
// with a generated master key and demo credentials.
func devCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseDevFlags(args, stdout)
	if err != nil {
		return err
	}
	l, cleanup, err := devPrepareDir(&f)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg, created, err := devConfig(ctx, l, f)
	if err != nil {
		return err
	}
	devBanner(stdout, l.devLayout, cfg, created, l.temp)
	err = Run(ctx, cfg, stdout, stderr)
	if l.temp {
		fmt.Fprintf(stdout, "credlet dev: stopped; removed %s (master key included)\n", l.Dir)
	} else {
		fmt.Fprintf(stdout, "credlet dev: stopped; %s kept (run again with --dir %s to resume)\n", l.Dir, l.Dir)
	}
	return err
}

func parseDevFlags(args []string, stdout io.Writer) (devFlags, error) {
	var f devFlags
	fset := flag.NewFlagSet("dev", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	fset.StringVar(&f.dir, "dir", "", "working directory, kept across runs (default: a new temp dir, removed on exit)")
	fset.BoolVar(&f.keep, "keep", false, "keep the temp dir on exit")
	fset.StringVar(&f.listen, "listen", "127.0.0.1:0", "address for /metrics, /healthz, /readyz (port 0: a free port)")
	fset.StringVar(&f.notify, "notify", "", "after each commit: signal:SIGHUP:PROCESS_NAME or http:URL")
	fset.StringVar(&f.auditFile, "audit-file", "", "audit log (default DIR/audit.log; - is stdout)")
	fset.DurationVar(&f.refresh, "refresh", 10*time.Second, "poll interval backing up the file watch")
	fset.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fset.StringVar(&f.logFormat, "log-format", "text", "json or text")
	if err := parseFlags(fset, args, osGetenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: credlet-agent dev [flags]   (each flag also reads CREDLET_<FLAG>)")
			fset.SetOutput(stdout)
			fset.PrintDefaults()
			return f, errHelp
		}
		return f, err
	}
	if fset.NArg() > 0 {
		return f, usageError("unexpected argument %q (credlet-agent dev takes only flags)", fset.Arg(0))
	}
	return f, nil
}

// devDir is the dev layout and whether it lives in a temp dir removed on
// exit.
type devDir struct {
	devLayout
	temp bool
}

// devPrepareDir makes the working directory (a temp dir unless --dir) and
// its subdirectories. cleanup removes a temp dir unless --keep.
func devPrepareDir(f *devFlags) (devDir, func(), error) {
	cleanup := func() {}
	temp := f.dir == ""
	if temp {
		d, err := os.MkdirTemp("", "credlet-dev-")
		if err != nil {
			return devDir{}, cleanup, fmt.Errorf("dev: %w", err)
		}
		f.dir = d
		if !f.keep {
			cleanup = func() { _ = os.RemoveAll(d) }
		}
	}
	l := devDir{devLayout: newDevLayout(f.dir), temp: temp && !f.keep}
	if len(l.Socket) > 100 {
		cleanup()
		return l, func() {}, usageError("--dir %s: too long for a Unix socket path (%s is %d bytes; the limit is 107)", l.Dir, l.Socket, len(l.Socket))
	}
	for _, d := range []string{l.Dir, l.Secrets, filepath.Dir(l.Socket)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			cleanup()
			return l, func() {}, fmt.Errorf("dev: %w", err)
		}
	}
	return l, cleanup, nil
}

// devConfig seeds the demo credentials and builds the agent's
// configuration. created reports whether the credentials were new.
func devConfig(ctx context.Context, l devDir, f devFlags) (RunConfig, bool, error) {
	created, err := devSeed(ctx, l.devLayout)
	if err != nil {
		return RunConfig{}, false, err
	}
	creds, err := devCredentials(l.devLayout)
	if err != nil {
		return RunConfig{}, false, err
	}
	addr, err := devListen(f.listen)
	if err != nil {
		return RunConfig{}, false, err
	}
	if f.auditFile == "" {
		f.auditFile = l.Audit
	}
	cfg := RunConfig{
		Auth: "token", Source: "file:" + l.Credentials, MasterKeyFile: l.Key, Credentials: creds,
		SecretsDir: l.Secrets, Socket: l.Socket, Listen: addr, AuditFile: f.auditFile, Notify: f.notify,
		Refresh: f.refresh, RenewAt: 0.8, FileUID: -1, FileGID: -1, FileMode: 0o400,
		LogLevel: f.logLevel, LogFormat: f.logFormat,
	}
	if err := cfg.validate(); err != nil {
		return RunConfig{}, false, err
	}
	return cfg, created, nil
}

// devSeed makes the master key and the demo credentials file unless they
// exist. It reports whether it created the credentials.
func devSeed(ctx context.Context, l devLayout) (bool, error) {
	var key *filesource.Key
	var err error
	if _, serr := os.Stat(l.Key); errors.Is(serr, fs.ErrNotExist) {
		key, err = filesource.GenerateKey(l.Key)
	} else {
		key, err = filesource.LoadKey(l.Key)
	}
	if err != nil {
		return false, fmt.Errorf("dev: %w", err)
	}
	defer key.Close()
	if _, err := os.Stat(l.Credentials); err == nil {
		return false, nil
	}
	now := time.Now()
	doc := &filesource.Document{}
	defer doc.Wipe()
	for _, s := range devSets {
		c, err := credspec.Parse(s.spec)
		if err != nil {
			return false, err
		}
		fields := map[string][]byte{}
		for _, f := range s.fields {
			fields[f] = []byte("FAKE-demo-" + strings.ReplaceAll(f, "_", "-") + "-v1")
		}
		if _, err := doc.Put(c.KVPath(), fields, 0, now); err != nil {
			return false, err
		}
	}
	if err := filesource.Create(ctx, l.Credentials, key, doc); err != nil {
		return false, fmt.Errorf("dev: %w", err)
	}
	return true, nil
}

// devCredentials is every set the file defines, the demo sets with their
// delivery options.
func devCredentials(l devLayout) ([]credspec.Credential, error) {
	inFile, err := filesource.Names(l.Credentials, l.Key)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	demo := map[string]credspec.Credential{}
	for _, s := range devSets {
		c, err := credspec.Parse(s.spec)
		if err != nil {
			return nil, err
		}
		demo[c.KVPath()] = c
	}
	out := make([]credspec.Credential, 0, len(inFile))
	names := map[string]string{}
	for _, c := range inFile {
		if d, ok := demo[c.KVPath()]; ok {
			c = d
		}
		if other, dup := names[c.Name]; dup {
			return nil, fmt.Errorf("dev: %s and %s would both be delivered as %q; rename one", other, c.KVPath(), c.Name)
		}
		names[c.Name] = c.KVPath()
		out = append(out, c)
	}
	return out, nil
}

// devListen resolves port 0 to a free port so the banner can show it.
func devListen(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usageError("--listen %q: want HOST:PORT", addr)
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("dev: --listen %s: %w", addr, err)
	}
	defer ln.Close()
	return net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)), nil
}

func devBanner(w io.Writer, l devLayout, cfg RunConfig, created, removed bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "credlet dev: the agent on the embedded file source (values are fake)\n")
	if created {
		fmt.Fprintf(&b, "  created a master key and demo credentials in %s\n", l.Dir)
	}
	fmt.Fprintf(&b, "  socket       %s   (export CREDLET_SOCKET=%s)\n", l.Socket, l.Socket)
	fmt.Fprintf(&b, "  files        %s/<name>/   (export CREDLET_SECRETS_DIR=%s)\n", l.Secrets, l.Secrets)
	fmt.Fprintf(&b, "  credentials  %s (AES-256-GCM; key %s)\n", l.Credentials, l.Key)
	fmt.Fprintf(&b, "  metrics      http://%s/metrics   readiness http://%s/readyz\n", cfg.Listen, cfg.Listen)
	fmt.Fprintf(&b, "  audit log    %s\n", cfg.AuditFile)
	for _, c := range cfg.Credentials {
		fmt.Fprintf(&b, "  set          %-14s %s (format %s)\n", c.Name, c.KVPath(), c.Format)
	}
	fmt.Fprintf(&b, "try:\n")
	fmt.Fprintf(&b, "  credlet-agent get --socket %s exchange api_key\n", l.Socket)
	fmt.Fprintf(&b, "  cat %s/exchange/credentials.env\n", l.Secrets)
	fmt.Fprintf(&b, "  head -c 24 /dev/urandom | base64 | credlet-agent creds rotate secret/demo/exchange api_key=- --source file:%s --master-key-file %s\n", l.Credentials, l.Key)
	fmt.Fprintf(&b, "  credlet-agent creds history secret/demo/exchange --source file:%s --master-key-file %s\n", l.Credentials, l.Key)
	if removed {
		fmt.Fprintf(&b, "Ctrl-C stops it and removes %s.\n", l.Dir)
	} else {
		fmt.Fprintf(&b, "Ctrl-C stops it; %s stays.\n", l.Dir)
	}
	_, _ = io.WriteString(w, b.String())
}
