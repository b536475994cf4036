// Command demo is `make demo` and `make demo-vault`: it builds the agent
// and the example trading bot, starts the agent (on the embedded encrypted
// file source, or on a Vault dev server with --vault), runs the trading bot
// (Unix socket, agent/client.Watch) and the legacy app (credentials.env,
// SIGHUP), rotates the credentials with `credlet-agent creds`, and shows
// both apps picking up the new version without a restart. It prints
// versions, never values, and checks that no value reached any log.
//
//	go run ./examples/demo                       # file source
//	go run ./examples/demo --vault PATH/TO/vault # Vault dev server, Transit-encrypted fields
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.vault, "vault", "", "vault binary: run against a Vault dev server instead of the file source")
	flag.StringVar(&o.agent, "agent", "", "prebuilt credlet-agent (default: build ./agent)")
	flag.StringVar(&o.bot, "bot", "", "prebuilt example trading bot (default: build ./examples/tradingbot)")
	flag.StringVar(&o.root, "root", ".", "repository root")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up after this long (building excluded)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.BoolVar(&o.verbose, "verbose", false, "show every line the programs print")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo FAILED:", err)
		os.Exit(1)
	}
}

type options struct {
	vault, agent, bot, root string
	timeout                 time.Duration
	keep, verbose           bool
}

// demo is one run's state.
type demo struct {
	o        options
	dir      string // work directory (short: it holds the socket)
	agentBin string
	botBin   string
	legacy   string
	socket   string
	secrets  string
	values   []string // every value written, to prove none leaked
	tokens   []string // Vault tokens: may appear in Vault's own log only
	children []*child
	step     int
	steps    int
	vault    *vaultDev
	agent    *child
	// backend flags for `credlet-agent creds`
	credsArgs []string
	credsEnv  []string
}

func run(ctx context.Context, o options) (err error) {
	d := &demo{o: o, steps: 8}
	if d.dir, err = os.MkdirTemp("", "credlet-demo-"); err != nil {
		return err
	}
	defer func() {
		for i := len(d.children) - 1; i >= 0; i-- {
			_ = d.children[i].stop()
		}
		if d.vault != nil {
			d.vault.stop()
		}
		if err != nil || o.keep {
			fmt.Printf("\nwork directory kept for inspection: %s (logs: *.log)\n", d.dir)
			return
		}
		_ = os.RemoveAll(d.dir)
	}()
	if err := d.build(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	began := time.Now()
	if o.vault != "" {
		err = d.startVaultAgent(ctx)
	} else {
		err = d.startDevAgent(ctx)
	}
	if err != nil {
		return err
	}
	if err := d.runApps(ctx); err != nil {
		return err
	}
	fmt.Printf("\ndone in %s: both apps moved from version 1 to version 2 without a restart.\n", time.Since(began).Round(100*time.Millisecond))
	return nil
}

func (d *demo) path(name string) string { return filepath.Join(d.dir, name) }

func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Printf("\n[%d/%d] %s\n", d.step, d.steps, fmt.Sprintf(format, args...))
}

func (d *demo) note(format string, args ...any) { fmt.Printf("      "+format+"\n", args...) }

// build compiles the agent and the bot unless given.
func (d *demo) build(ctx context.Context) error {
	d.say("building credlet-agent and the example trading bot")
	if _, err := os.Stat(filepath.Join(d.o.root, "agent", "main.go")); err != nil {
		return fmt.Errorf("run from the repository root (make demo), or pass --root: %w", err)
	}
	d.legacy = filepath.Join(d.o.root, "examples", "legacy-app", "legacy-app")
	if abs, err := filepath.Abs(d.legacy); err == nil {
		d.legacy = abs
	}
	bin := d.path("bin")
	if err := os.Mkdir(bin, 0o700); err != nil {
		return err
	}
	start := time.Now()
	for _, b := range []struct {
		given *string
		out   *string
		pkg   string
	}{{&d.o.agent, &d.agentBin, "./agent"}, {&d.o.bot, &d.botBin, "./examples/tradingbot"}} {
		if *b.given != "" {
			*b.out = *b.given
			continue
		}
		*b.out = filepath.Join(bin, filepath.Base(b.pkg))
		if b.pkg == "./agent" {
			*b.out = filepath.Join(bin, "credlet-agent")
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", *b.out, b.pkg)
		cmd.Dir = d.o.root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	d.note("built in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// startDevAgent runs `credlet-agent dev`: a generated master key, an
// encrypted credentials file with fake demo values, the agent on it.
func (d *demo) startDevAgent(ctx context.Context) error {
	dev := d.path("dev")
	d.say("starting `credlet-agent dev`: it generates a master key, writes demo credentials (fake values)\n      into an AES-256-GCM encrypted file, and runs the agent on that file")
	cmd := exec.CommandContext(ctx, d.agentBin, "dev", "--dir", dev, "--notify", "signal:SIGHUP:legacy-app",
		"--log-format", "text", "--refresh", "2s")
	cmd.Env = cleanEnv()
	agent, err := start(d, "agent", cmd, d.showAgent)
	if err != nil {
		return err
	}
	d.agent = agent
	d.socket = filepath.Join(dev, "run", "agent.sock")
	d.secrets = filepath.Join(dev, "secrets")
	d.credsArgs = []string{"--source", "file:" + filepath.Join(dev, "credentials.enc"), "--master-key-file", filepath.Join(dev, "master.key")}
	d.credsEnv = cleanEnv()
	// The demo values the dev command writes all start with this.
	d.values = append(d.values, "FAKE-demo-")
	if _, err := agent.expect(ctx, "socket ", 20*time.Second); err != nil {
		return err
	}
	return d.waitReady(ctx, agent)
}

func (d *demo) showAgent(line string) bool {
	if d.o.verbose {
		return true
	}
	for _, s := range []string{"level=WARN", "level=ERROR", "panic"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// cleanEnv is the environment without CREDLET_* and VAULT_* settings a
// developer may have exported, so the demo runs the same everywhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CREDLET_") || strings.HasPrefix(kv, "VAULT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// fakeValue is a new obviously fake value; the demo remembers it to prove
// it never shows up in any output.
func (d *demo) fakeValue(field string, version int) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	v := fmt.Sprintf("FAKE-demo-%s-v%d-%s", strings.ReplaceAll(field, "_", "-"), version, hex.EncodeToString(b))
	d.values = append(d.values, v)
	return v
}

// writeValue puts a value in a 0600 file for FIELD=@FILE.
func (d *demo) writeValue(name, value string) (string, error) {
	p := d.path(name)
	return p, os.WriteFile(p, []byte(value+"\n"), 0o600)
}

// creds runs `credlet-agent creds ...` and shows its output.
func (d *demo) creds(ctx context.Context, stdin string, args ...string) (string, error) {
	full := append(append([]string{"creds"}, args...), d.credsArgs...)
	shown := append([]string{"credlet-agent"}, full...)
	for i, a := range shown {
		if strings.ContainsAny(a, " ;") {
			shown[i] = "'" + a + "'"
		}
	}
	fmt.Printf("      $ %s\n", strings.Join(shown, " "))
	cmd := exec.CommandContext(ctx, d.agentBin, full...)
	cmd.Env = d.credsEnv
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	for l := range strings.Lines(strings.TrimRight(string(out), "\n")) {
		fmt.Printf("        %s", l)
		if !strings.HasSuffix(l, "\n") {
			fmt.Println()
		}
	}
	if err != nil {
		return string(out), fmt.Errorf("credlet-agent creds %s: %v", args[0], err)
	}
	return string(out), nil
}

var errLeak = errors.New("a credential value leaked")
