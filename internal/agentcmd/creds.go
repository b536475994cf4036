package agentcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/credlet/credlet/internal/creds"
)

// credsCommand: credlet-agent creds put|rotate|revoke|list|history|rollback.
// Flags may come before or after the command and its arguments.
func credsCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var (
		cfg                                      creds.Config
		inv                                      creds.Invocation
		transitFields                            string
		authMethod, role, authMount, saTokenFile string
	)
	fs := flag.NewFlagSet("creds", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Source, "source", "vault", "vault, or file:PATH for the embedded encrypted file")
	fs.StringVar(&cfg.MasterKeyFile, "master-key-file", "", "AES-256 key file for --source file:PATH")
	fs.StringVar(&cfg.Vault.Addr, "vault-addr", osGetenv("VAULT_ADDR"), "Vault address")
	fs.StringVar(&cfg.Vault.CACert, "vault-ca-cert", osGetenv("VAULT_CACERT"), "PEM bundle to trust for Vault")
	fs.StringVar(&cfg.Vault.TokenFile, "vault-token-file", "", "file holding the Vault token (else VAULT_TOKEN or ~/.vault-token)")
	fs.StringVar(&cfg.Vault.TransitMount, "transit-mount", "transit", "where Transit is mounted")
	fs.StringVar(&authMethod, "auth", "token", "token, or kubernetes (log in with --role and the service-account token in --token-file)")
	fs.StringVar(&role, "role", "", "--auth kubernetes: the Vault role")
	fs.StringVar(&authMount, "auth-mount", "kubernetes", "--auth kubernetes: the auth mount path")
	fs.StringVar(&saTokenFile, "token-file", creds.DefaultSATokenFile, "--auth kubernetes: the projected service-account token (audience vault)")
	fs.IntVar(&inv.Write.CAS, "cas", 0, "put: check-and-set version (0: create)")
	fs.BoolVar(&inv.Write.Replace, "replace", false, "rotate: drop the fields not given")
	fs.StringVar(&inv.Write.TransitKey, "transit", "", "encrypt the values with this Transit key")
	fs.StringVar(&inv.Write.Context, "context", "", "derived-key context for --transit (the partner)")
	fs.StringVar(&transitFields, "transit-fields", "", "encrypt only these fields (comma list)")
	fs.BoolVar(&inv.DryRun, "dry-run", false, "rewrap, apply, rollback --journal: check and say what would be done; write nothing")
	fs.StringVar(&inv.Journal, "journal", "", "apply: JSON-lines journal to create; rollback: the journal to undo")
	fs.DurationVar(&inv.MaxAge, "max-age", 0, "keys: the oldest the key's latest version may be (default 720h)")
	fs.StringVar(&inv.ExpiresAt, "expires-at", "", "put, rotate: when the credential expires (RFC 3339), or none")

	flagArgs, pos, err := splitInterleaved(fs, args)
	if err != nil {
		return err
	}
	if err := parseFlags(fs, flagArgs, osGetenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, creds.Usage)
			return errHelp
		}
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "cas" {
			inv.CASSet = true
		}
	})
	if transitFields != "" {
		for f := range strings.SplitSeq(transitFields, ",") {
			if f = strings.TrimSpace(f); f != "" {
				inv.Write.TransitFields = append(inv.Write.TransitFields, f)
			}
		}
	}
	if len(pos) == 0 {
		return usageError("creds needs a command (allowed: %s); see credlet-agent creds --help", strings.Join(creds.Commands, ", "))
	}
	if pos[0] == "help" {
		fmt.Fprint(stdout, creds.Usage)
		return errHelp
	}
	inv.Command, inv.Args = pos[0], pos[1:]
	if cfg.Vault.Login, err = creds.CheckLogin(authMethod, role, authMount, saTokenFile); err != nil {
		return credsError(err)
	}
	b, err := creds.Open(cfg)
	if err != nil {
		return credsError(err)
	}
	defer b.Close()
	return credsError(creds.Run(ctx, b, inv, stdin, stdout, stderr))
}

// credsError maps the creds package's usage errors to exit code 2.
func credsError(err error) error {
	if err != nil && errors.Is(err, creds.ErrUsage) {
		return usageError("%s", err.Error())
	}
	return err
}

// splitInterleaved separates flags from positional arguments so flags may
// follow them ("creds put PATH a=@f --transit K"). "--" ends the flags.
func splitInterleaved(fs *flag.FlagSet, args []string) (flags, pos []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(pos, args[i+1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 >= len(args) {
			return nil, nil, usageError("--%s needs a value", name)
		}
		i++
		flags = append(flags, args[i])
	}
	return flags, pos, nil
}
