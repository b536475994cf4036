package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/agent/client"
)

// waitReady polls the agent's health over the socket until every required
// set is served.
func (d *demo) waitReady(ctx context.Context, agent *child) error {
	c := client.New(d.socket, client.WithAttempts(1))
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-agent.done:
			return fmt.Errorf("the agent exited (%v); its log:\n%s", agent.exitErr, tail(agent.output(), 15))
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		h, err := c.Health(rctx)
		cancel()
		if err == nil && h.Ready {
			var sets []string
			for name, ch := range h.Credentials {
				sets = append(sets, fmt.Sprintf("%s version %d", name, ch.Version))
			}
			slices.Sort(sets)
			d.note("agent ready (GET /v1/health over %s): %s", d.socket, strings.Join(sets, ", "))
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the agent was not ready within 30s (last answer: %v); its log:\n%s", err, tail(agent.output(), 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runApps starts both apps, rotates, and watches them follow.
func (d *demo) runApps(ctx context.Context) error {
	d.say("starting the trading bot (examples/tradingbot): it reads `exchange` over the agent's Unix socket\n      with agent/client, watches for new versions, and signs a fake order every second")
	bot := exec.CommandContext(ctx, d.botBin, "--credential", "exchange", "--order-every", "1s")
	bot.Env = append(cleanEnv(), "CREDLET_SOCKET="+d.socket)
	tb, err := start(d, "tradingbot", bot, d.showApp)
	if err != nil {
		return err
	}
	if _, err := tb.expect(ctx, "using exchange version 1", 20*time.Second); err != nil {
		return err
	}
	if _, err := tb.expect(ctx, "with exchange version 1", 10*time.Second); err != nil {
		return err
	}

	d.say("starting the legacy app (examples/legacy-app, a shell script): it reads %s/exchange/credentials.env\n      and reloads it on SIGHUP, which the agent sends after each rotation (--notify signal:SIGHUP:legacy-app)", d.secrets)
	legacy := exec.CommandContext(ctx, d.legacy)
	legacy.Env = append(cleanEnv(), "CREDLET_SECRETS_DIR="+d.secrets)
	la, err := start(d, "legacy-app", legacy, d.showApp)
	if err != nil {
		return err
	}
	if _, err := la.expect(ctx, "loaded exchange version 1", 20*time.Second); err != nil {
		return err
	}

	d.say("rotating `exchange` with the operator CLI: new values from stdin and from a file (never on the command line)")
	secretFile, err := d.writeValue("new-api-secret", d.fakeValue("api_secret", 2))
	if err != nil {
		return err
	}
	args := []string{"rotate", "secret/demo/exchange", "api_key=-", "api_secret=@" + secretFile}
	if d.vault != nil {
		args = append(args, "--transit", transitKey, "--context", partner)
	}
	rotated := time.Now()
	if _, err := d.creds(ctx, d.fakeValue("api_key", 2)+"\n", args...); err != nil {
		return err
	}
	_ = os.Remove(secretFile)

	d.say("waiting for both apps to switch to version 2, while they keep running")
	if _, err := d.agent.expect(ctx, "version=2 previous_version=1", 20*time.Second); err != nil {
		return err
	}
	if _, err := tb.expect(ctx, "now using exchange version 2", 20*time.Second); err != nil {
		return err
	}
	d.note("trading bot switched %s after the rotation", time.Since(rotated).Round(time.Millisecond))
	if _, err := la.expect(ctx, "SIGHUP received", 20*time.Second); err != nil {
		return err
	}
	if _, err := la.expect(ctx, "now version 2", 5*time.Second); err != nil {
		return fmt.Errorf("%w (the legacy app printed:\n%s)", err, tail(la.output(), 6))
	}
	d.note("legacy app reloaded %s after the rotation", time.Since(rotated).Round(time.Millisecond))
	if strings.Contains(la.output(), "before the new files") {
		d.note("note: the agent sent SIGHUP before it had written version 2's files (--notify follows the store,")
		d.note("not the file sink); the app looked again and found them")
	}
	if _, err := tb.expect(ctx, "with exchange version 2", 10*time.Second); err != nil {
		return err
	}

	d.say("the version history (times and states, never values)")
	if _, err := d.creds(ctx, "", "history", "secret/demo/exchange"); err != nil {
		return err
	}

	d.say("stopping everything, then checking the audit trail and every log for leaked values")
	for i := len(d.children) - 1; i >= 0; i-- {
		c := d.children[i]
		if err := c.stop(); err != nil && !isSignalExit(err) {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	d.children = nil
	audit := d.auditPath()
	out, err := exec.CommandContext(ctx, d.agentBin, "audit", "verify", audit).CombinedOutput()
	fmt.Printf("      $ credlet-agent audit verify %s\n        %s", audit, out)
	if err != nil {
		return fmt.Errorf("audit verify: %v", err)
	}
	return d.checkLeaks()
}

func (d *demo) showApp(line string) bool {
	if d.o.verbose {
		return true
	}
	return strings.Contains(line, "error")
}

func (d *demo) auditPath() string {
	if d.vault != nil {
		return d.path("audit.log")
	}
	return d.path("dev/audit.log")
}

// checkLeaks scans every log and output file in the work directory for
// the values the demo wrote.
func (d *demo) checkLeaks() error {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return err
	}
	files := []string{d.auditPath()}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log") {
			files = append(files, d.path(e.Name()))
		}
	}
	lines := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		lines += strings.Count(string(b), "\n")
		secrets := d.values
		if filepath.Base(f) != "vault.log" { // the dev server prints its root token
			secrets = append(slices.Clone(d.values), d.tokens...)
		}
		for _, v := range secrets {
			if strings.Contains(string(b), v) {
				return fmt.Errorf("%w: %s contains a value or token (starting %.14s)", errLeak, f, v)
			}
		}
	}
	d.note("no credential value in the audit trail, the agent's log or the apps' output (%d files, %d lines)", len(files), lines)
	return nil
}

func isSignalExit(err error) bool {
	ee, ok := err.(*exec.ExitError)
	return ok && !ee.Exited() // ended by the SIGTERM it was sent
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "        " + strings.Join(lines, "\n        ")
}
