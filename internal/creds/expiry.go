package creds

import (
	"context"
	"fmt"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// The lifecycle commands and flags of creds (run.go dispatches them).

// checkCommandFlags refuses flags given to a command they do not apply to.
func checkCommandFlags(inv Invocation) error {
	cmd := inv.Command
	switch {
	case inv.DryRun && cmd != "rewrap" && cmd != "apply" && !(cmd == "rollback" && inv.Journal != ""):
		return usage("--dry-run applies to rewrap, apply and rollback --journal")
	case inv.Journal != "" && cmd != "apply" && cmd != "rollback":
		return usage("--journal applies to apply and rollback")
	case inv.MaxAge != 0 && cmd != "keys":
		return usage("--max-age applies to keys")
	case inv.MaxAge < 0:
		return usage(fmt.Sprintf("--max-age %s: want a positive duration such as 720h", inv.MaxAge))
	case inv.ExpiresAt != "" && cmd != "put" && cmd != "rotate":
		return usage("--expires-at applies to put and rotate (in a plan: expires-at per entry)")
	case cmd == "rewrap" && (inv.Write.Replace || len(inv.Write.TransitFields) > 0):
		return usage("rewrap takes --transit KEY [--context CTX] [--dry-run]: it rewraps every Transit field it finds")
	case (cmd == "keys" || cmd == "apply" || cmd == "rollback") && (inv.Write.TransitKey != "" || inv.Write.Context != ""):
		return usage(fmt.Sprintf("--transit and --context do not apply to %s (keys takes the key as its argument; a plan names them per entry)", cmd))
	}
	return nil
}

// expiryFor returns the expiry a put or rotate writes: nil to leave the
// set's custom metadata alone, else the time (zero: remove it). A set that
// carries expires_at needs --expires-at on every write of a new value, so
// a fresh token never inherits the old one's expiry unnoticed.
func expiryFor(ctx context.Context, b Backend, inv Invocation, path string, now func() time.Time) (*time.Time, error) {
	lb, isLifecycle := b.(Lifecycle)
	if inv.ExpiresAt != "" {
		if !isLifecycle {
			return nil, usage(fmt.Sprintf("--expires-at needs Vault (--source vault): %s keeps no custom metadata", b.Describe()))
		}
		t, err := ParseExpiresAt(inv.ExpiresAt, now())
		if err != nil {
			return nil, usage("--expires-at " + err.Error())
		}
		return &t, nil
	}
	if !isLifecycle || (inv.Command == "put" && inv.Write.CAS == 0) {
		return nil, nil
	}
	cur, err := lb.ExpiresAt(ctx, path)
	if err != nil || cur.IsZero() {
		return nil, err
	}
	return nil, usage(fmt.Sprintf("%s carries expires_at %s (custom metadata): give --expires-at TIME for the new value, or --expires-at none if it does not expire",
		path, formatExpiry(cur)))
}

// writeWithExpiry runs put or rotate; with an expiry it writes the expiry
// first (an agent that sees the new version sees its expiry) and puts the
// old one back if the write fails.
func writeWithExpiry(ctx context.Context, b Backend, inv Invocation, path string, fields map[string][]byte, exp *time.Time) (Result, error) {
	var before time.Time
	lb, _ := b.(Lifecycle)
	if exp != nil {
		var err error
		if before, err = lb.ExpiresAt(ctx, path); err != nil {
			securemem.WipeFields(fields)
			return Result{}, err
		}
		if err := lb.SetExpiresAt(ctx, path, *exp); err != nil {
			securemem.WipeFields(fields)
			return Result{}, err
		}
	}
	var res Result
	var err error
	if inv.Command == "put" {
		res, err = Put(ctx, b, path, fields, inv.Write)
	} else {
		res, err = Rotate(ctx, b, path, fields, inv.Write)
	}
	if err != nil && exp != nil {
		restoreExpiry(ctx, lb, path, formatExpiry(before))
	}
	return res, err
}

func runRewrap(ctx context.Context, c *call) error {
	if len(c.args) != 1 {
		return usage("usage: credlet-agent creds rewrap PREFIX --transit KEY [--context CTX] [--dry-run]")
	}
	_, err := Rewrap(ctx, c.b, c.args[0], RewrapOptions{Key: c.inv.Write.TransitKey, Context: c.inv.Write.Context, DryRun: c.inv.DryRun}, c.stdout)
	return err
}

func runKeys(ctx context.Context, c *call) error {
	if len(c.args) != 1 {
		return usage("usage: credlet-agent creds keys KEY [--max-age 720h]")
	}
	return Keys(ctx, c.b, c.args[0], KeysOptions{MaxAge: c.inv.MaxAge, Now: c.inv.Now}, c.stdout)
}

func runApply(ctx context.Context, c *call) error {
	if len(c.args) != 1 {
		return usage("usage: credlet-agent creds apply PLAN [--dry-run] [--journal FILE]")
	}
	return Apply(ctx, c.b, c.args[0], ApplyOptions{DryRun: c.inv.DryRun, Journal: c.inv.Journal, Now: c.inv.Now}, c.stdout)
}
