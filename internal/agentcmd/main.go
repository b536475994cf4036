package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/credlet/credlet/internal/version"
)

const usage = `credlet-agent: Vault credentials into trading pods

usage:
  credlet-agent [run] [flags]        the sidecar (default)
  credlet-agent get NAME [FIELD]     read a credential from the socket
  credlet-agent audit verify FILE    check an audit log's hash chain
  credlet-agent creds COMMAND ...    operator commands against Vault (put, rotate, revoke, list, history, rollback)
  credlet-agent dev                  run on the embedded file source with demo credentials
  credlet-agent version

Every flag also reads CREDLET_<FLAG> from the environment (--vault-addr: CREDLET_VAULT_ADDR).
'credlet-agent run --help' lists the flags.
`

// Main runs the command line and returns the process exit code: 0 success,
// 1 failure, 2 bad usage.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cmd, rest := "run", args
	if len(args) > 0 && (args[0] == "" || args[0][0] != '-') {
		cmd, rest = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runCommand(ctx, rest, stdout, stderr)
	case "get":
		err = getCommand(ctx, rest, stdout)
	case "audit":
		err = auditCommand(rest, stdout)
	case "creds":
		err = credsCommand(ctx, rest, stdin, stdout, stderr)
	case "dev":
		err = devCommand(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "credlet-agent", version.String())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError("unknown command %q (allowed: run, get, audit, creds, dev, version)", cmd)
	}
	return exitCode(err, stderr)
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "credlet-agent:", err)
		return 2
	default:
		var ee *exitError
		if errors.As(err, &ee) {
			fmt.Fprintln(stderr, "credlet-agent:", ee.msg)
			return ee.code
		}
		fmt.Fprintln(stderr, "credlet-agent:", err)
		return 1
	}
}

var errHelp = errors.New("help shown")

// exitError carries a specific exit code and a one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func osGetenv(k string) string { return os.Getenv(k) }
