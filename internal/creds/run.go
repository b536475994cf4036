package creds

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Commands lists the subcommands, for usage messages.
var Commands = []string{"put", "rotate", "revoke", "list", "history", "rollback", "rewrap", "keys", "apply"}

// Usage is the command's help text.
const Usage = `usage: credlet-agent creds COMMAND [flags] ARGS

  put PATH FIELD=@FILE|FIELD=-|FIELD=VALUE... [--cas N] [--transit KEY [--context CTX] [--transit-fields a,b]] [--expires-at TIME]
        create a credential set (or write on top of version N with --cas N)
  rotate PATH FIELD=@FILE|FIELD=-... [--replace] [--transit KEY [--context CTX]] [--expires-at TIME|none]
        write a new version on top of the current one (check-and-set); other fields are kept unless --replace
  revoke PATH            soft-delete the current version
  list PREFIX            list sets and folders under PREFIX (e.g. secret/partners)
  history PATH           versions with their times (never values)
  rollback PATH VERSION  re-publish an old version as the newest
  rollback --journal FILE [--dry-run]
        undo an apply: restore every path of its journal to its data before, refusing paths written since
  rewrap PREFIX --transit KEY [--context CTX] [--dry-run]
        rewrap every set at or under PREFIX whose ciphertext is below the key's latest version (Transit rewrap,
        batched; written with check-and-set); sets already current are left alone
  keys KEY [--max-age 720h]
        a Transit key's latest version and age, min_decryption_version and auto_rotate_period; exit 1 when the
        latest version is older than --max-age, or auto-rotation is off or longer
  apply PLAN [--dry-run] [--journal FILE]
        a bulk rotation from a YAML plan (values only from @files): validate every entry, then write all or
        nothing (a failure part-way rolls back what was written); --journal records each write (never a value)

PATH is MOUNT/PATH as in --credential, e.g. secret/partners/acme/zerodha.
FIELD=@FILE reads the value from a file, FIELD=- from stdin (one trailing newline is dropped);
FIELD=VALUE works but leaves the value in shell history.
--expires-at TIME (RFC 3339) stores when the credential expires (an OAuth or session token) in the set's
KV v2 custom metadata expires_at; agents serve it and alert before it passes. A set that carries one needs
--expires-at on every put or rotate (none removes it).

flags (anywhere on the line; each also reads CREDLET_<FLAG>):
  --source vault|file:PATH   where the sets live (default vault)
  --master-key-file FILE     the file source's AES-256 key
  --vault-addr URL           Vault address (default $VAULT_ADDR); token from --vault-token-file, VAULT_TOKEN or ~/.vault-token
  --vault-ca-cert FILE       PEM bundle to trust for Vault
  --transit-mount PATH       where Transit is mounted (default transit)
  --auth token|kubernetes    how to get a Vault token (default token); kubernetes logs in with --role and
                             the service-account token in --token-file (--auth-mount, default kubernetes)
  --dry-run                  rewrap, apply, rollback --journal: check and say what would be done, write nothing
  --journal FILE             apply: the JSON-lines journal to create; rollback: the journal to undo
  --max-age D                keys: the oldest the key's latest version may be (default 720h)
  --expires-at TIME|none     put, rotate: when the credential expires (RFC 3339), stored as custom metadata
`

// Config selects and configures the backend.
type Config struct {
	Source        string // "vault" (or empty) or "file:PATH"
	MasterKeyFile string
	Vault         VaultConfig
}

// Open returns the backend cfg names.
func Open(cfg Config) (Backend, error) {
	switch {
	case cfg.Source == "" || cfg.Source == "vault":
		return NewVault(cfg.Vault)
	case strings.HasPrefix(cfg.Source, "file:"):
		return NewFile(strings.TrimPrefix(cfg.Source, "file:"), cfg.MasterKeyFile)
	}
	return nil, usage(fmt.Sprintf("--source %q: allowed vault or file:PATH", cfg.Source))
}

// Invocation is one parsed command line.
type Invocation struct {
	Command string
	Args    []string // positional arguments after the command
	Write   WriteOptions
	CASSet  bool // --cas was given

	DryRun    bool          // rewrap, apply, rollback --journal
	Journal   string        // apply, rollback --journal
	MaxAge    time.Duration // keys
	ExpiresAt string        // put, rotate: RFC 3339 or "none"; "" when not given
	Now       func() time.Time
}

// Run executes inv against b. Results go to stdout, warnings to stderr;
// values never go anywhere.
func Run(ctx context.Context, b Backend, inv Invocation, stdin io.Reader, stdout, stderr io.Writer) error {
	if inv.CASSet && inv.Command != "put" {
		return usage("--cas applies to put (rotate and rollback check-and-set on the version they read)")
	}
	if err := checkCommandFlags(inv); err != nil {
		return err
	}
	if inv.Now == nil {
		inv.Now = time.Now
	}
	cmd, ok := commandTable[inv.Command]
	if !ok {
		return usage(fmt.Sprintf("unknown creds command %q (allowed: %s)", inv.Command, strings.Join(Commands, ", ")))
	}
	return cmd(ctx, &call{b: b, inv: inv, args: inv.Args, stdin: stdin, stdout: stdout, stderr: stderr})
}

// call is one command's inputs and outputs.
type call struct {
	b              Backend
	inv            Invocation
	args           []string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// need checks the positional arguments: exactly n, or at least n when n is
// 2 or more.
func (c *call) need(n int, form string) error {
	if len(c.args) < n || (n < 2 && len(c.args) != n) {
		return usage("usage: credlet-agent creds " + form)
	}
	return nil
}

// commandTable maps each creds command to its step.
var commandTable = map[string]func(context.Context, *call) error{
	"put":      runWrite,
	"rotate":   runWrite,
	"revoke":   runRevoke,
	"rollback": runRollback,
	"history":  runHistory,
	"list":     runList,
	"rewrap":   runRewrap,
	"keys":     runKeys,
	"apply":    runApply,
}

func runWrite(ctx context.Context, c *call) error {
	cmd, a := c.inv.Command, c.args
	if err := c.need(2, cmd+" PATH FIELD=@FILE|FIELD=-|FIELD=VALUE..."); err != nil {
		return err
	}
	if cmd == "put" && c.inv.Write.CAS < 0 {
		return usage(fmt.Sprintf("--cas %d: want 0 (create) or the current version", c.inv.Write.CAS))
	}
	exp, err := expiryFor(ctx, c.b, c.inv, a[0], c.inv.Now)
	if err != nil {
		return err
	}
	fields, err := ParseAssignments(a[1:], c.stdin, c.stderr)
	if err != nil {
		return err
	}
	res, err := writeWithExpiry(ctx, c.b, c.inv, a[0], fields, exp)
	if err != nil {
		return err
	}
	printWrite(c.stdout, cmd, c.b, res)
	if exp != nil {
		fmt.Fprintf(c.stdout, "expires_at %s (custom metadata of %s)\n", formatExpiry(*exp), res.Path)
	}
	return nil
}

func runRevoke(ctx context.Context, c *call) error {
	if err := c.need(1, "revoke PATH"); err != nil {
		return err
	}
	res, err := Revoke(ctx, c.b, c.args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revoked %s version %d on %s (soft-deleted; agents report it and keep their last good version until a new one: creds rotate %s ...)\n",
		res.Path, res.From, c.b.Describe(), res.Path)
	return nil
}

func runRollback(ctx context.Context, c *call) error {
	a := c.args
	if c.inv.Journal != "" {
		if len(a) != 0 {
			return usage("usage: credlet-agent creds rollback --journal FILE [--dry-run] (no PATH or VERSION with --journal)")
		}
		return RollbackJournal(ctx, c.b, c.inv.Journal, c.inv.DryRun, c.inv.Now, c.stdout)
	}
	if len(a) != 2 {
		return usage("usage: credlet-agent creds rollback PATH VERSION")
	}
	v, err := strconv.Atoi(a[1])
	if err != nil {
		return usage(fmt.Sprintf("rollback VERSION %q: want a version number (see creds history %s)", a[1], a[0]))
	}
	res, err := Rollback(ctx, c.b, a[0], v)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "rolled back %s on %s: version %d re-published as version %d (fields: %s)\n",
		res.Path, c.b.Describe(), v, res.To, strings.Join(res.Changed, ", "))
	return nil
}

func runHistory(ctx context.Context, c *call) error {
	if err := c.need(1, "history PATH"); err != nil {
		return err
	}
	m, err := c.b.Metadata(ctx, c.args[0])
	if err != nil {
		return err
	}
	printHistory(c.stdout, m)
	return nil
}

func runList(ctx context.Context, c *call) error {
	if err := c.need(1, "list PREFIX"); err != nil {
		return err
	}
	names, err := c.b.List(ctx, c.args[0])
	if err != nil {
		return err
	}
	if len(names) == 0 {
		fmt.Fprintf(c.stderr, "credlet-agent: nothing under %s on %s\n", c.args[0], c.b.Describe())
	}
	for _, n := range names {
		fmt.Fprintln(c.stdout, n)
	}
	return nil
}

func printWrite(w io.Writer, cmd string, b Backend, r Result) {
	var sb strings.Builder
	switch {
	case cmd == "put" && r.From == 0:
		fmt.Fprintf(&sb, "created %s version %d on %s", r.Path, r.To, b.Describe())
	default:
		fmt.Fprintf(&sb, "wrote %s version %d on top of version %d on %s", r.Path, r.To, r.From, b.Describe())
	}
	fmt.Fprintf(&sb, " (fields set: %s", strings.Join(r.Changed, ", "))
	if len(r.Kept) > 0 {
		fmt.Fprintf(&sb, "; kept: %s", strings.Join(r.Kept, ", "))
	}
	if len(r.Dropped) > 0 {
		fmt.Fprintf(&sb, "; dropped: %s", strings.Join(r.Dropped, ", "))
	}
	if len(r.Encrypted) > 0 {
		fmt.Fprintf(&sb, "; Transit-encrypted: %s", strings.Join(r.Encrypted, ", "))
	}
	if r.Revoked {
		sb.WriteString("; the previous version was revoked, so nothing was carried over")
	}
	sb.WriteString(")\n")
	_, _ = io.WriteString(w, sb.String())
}

func printHistory(w io.Writer, m Metadata) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tCREATED\tSTATE")
	for _, v := range m.Versions {
		state := ""
		switch {
		case v.Destroyed:
			state = "destroyed"
		case !v.DeletedAt.IsZero():
			state = "revoked " + v.DeletedAt.UTC().Format(time.RFC3339)
		}
		if v.Version == m.Current {
			state = strings.TrimSpace("current " + state)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", v.Version, v.CreatedAt.UTC().Format(time.RFC3339), state)
	}
	_ = tw.Flush()
}
