package agentcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/credlet/credlet/agent/client"
	"github.com/credlet/credlet/internal/audit"
)

// getCommand: credlet-agent get [--socket PATH] NAME [FIELD]. Prints the
// field's value (for shell scripts and probes), or the whole set as JSON.
func getCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", "/credlet/run/agent.sock", "agent socket")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := parseFlags(fs, args, osGetenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: credlet-agent get [--socket PATH] [--timeout 10s] NAME [FIELD]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return errHelp
		}
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usageError("usage: credlet-agent get [--socket PATH] NAME [FIELD]")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cred, err := client.New(*socket).Get(ctx, fs.Arg(0))
	if err != nil {
		return fmt.Errorf("get %s: %w", fs.Arg(0), err)
	}
	if fs.NArg() == 2 {
		v, ok := cred.Fields[fs.Arg(1)]
		if !ok {
			return fmt.Errorf("get %s: no field %q in version %d", fs.Arg(0), fs.Arg(1), cred.Version)
		}
		_, err = io.WriteString(stdout, v)
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Name      string            `json:"name"`
		Version   int               `json:"version"`
		Fields    map[string]string `json:"fields"`
		FetchedAt time.Time         `json:"fetched_at"`
	}{cred.Name, cred.Version, cred.Fields, cred.FetchedAt})
}

// auditCommand: credlet-agent audit verify FILE.
func auditCommand(args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "verify" {
		return usageError("usage: credlet-agent audit verify FILE")
	}
	f, err := os.Open(args[1])
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	defer f.Close()
	n, err := audit.Verify(f)
	if err != nil {
		var ce *audit.ChainError
		if errors.As(err, &ce) {
			return &exitError{code: 1, msg: fmt.Sprintf("audit verify %s: chain broken at line %d: %s", args[1], ce.Line, ce.Reason)}
		}
		return fmt.Errorf("audit verify %s: %w", args[1], err)
	}
	fmt.Fprintf(stdout, "audit verify %s: %d records, chain intact\n", args[1], n)
	return nil
}
