// Command credlet-agent is credlet's sidecar: it logs in to Vault, keeps its
// token renewed, fetches and decrypts credentials into locked memory, and
// serves them over a Unix socket and as files on a tmpfs. See
// internal/agentcmd for the command line.
package main

import (
	"os"

	"github.com/credlet/credlet/internal/agentcmd"
)

func main() {
	os.Exit(agentcmd.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
