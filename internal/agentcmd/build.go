package agentcmd

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/credlet/credlet/internal/creds"
	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/notify"
	"github.com/credlet/credlet/internal/sink/file"
	"github.com/credlet/credlet/internal/socketapi"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/vault"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
	"github.com/credlet/credlet/internal/verify"
)

// build constructs every component from the configuration. Nothing runs yet.
func (a *agent) build(ctx context.Context) error {
	cfg := a.cfg
	if cfg.fileSource() && len(cfg.Credentials) == 0 {
		creds, err := filesource.Names(strings.TrimPrefix(cfg.Source, "file:"), cfg.MasterKeyFile)
		if err != nil {
			return fmt.Errorf("--source %s: %w", cfg.Source, err)
		}
		cfg.Credentials = creds
		a.cfg.Credentials = creds
	}
	decl := make([]store.Declared, 0, len(cfg.Credentials))
	for _, c := range cfg.Credentials {
		decl = append(decl, store.Declared{Name: c.Name, Optional: c.Optional})
		a.metrics.InitCredential(c.Name)
	}
	st, err := store.New(decl)
	if err != nil {
		return err
	}
	a.store = st
	a.closers = append(a.closers, st.Close)

	a.metrics.RefreshInterval.Set(cfg.Refresh.Seconds())
	if cfg.fileSource() {
		if err := a.buildFileSource(); err != nil {
			return err
		}
	} else if err := a.buildVault(); err != nil {
		return err
	}

	uid := uint32(os.Getuid())
	if cfg.SecretsDir != "" {
		sink, err := file.New(st, cfg.Credentials, file.Options{
			Dir: cfg.SecretsDir, UID: cfg.FileUID, GID: cfg.FileGID, Mode: cfg.FileMode,
			Logger: a.log, Metrics: a.metrics, Clock: a.clock,
		})
		if err != nil {
			return fmt.Errorf("--secrets-dir %s: %w", cfg.SecretsDir, err)
		}
		a.fileSink = sink
		a.runners = append(a.runners, runner{"file sink", sink.Run})
	}
	if cfg.Socket != "" && !cfg.Once {
		allowU := cfg.AllowUIDs
		if len(allowU) == 0 {
			allowU = []uint32{uid}
		}
		srv, err := socketapi.New(st, socketapi.Options{
			Path: cfg.Socket, AllowUIDs: allowU, AllowGIDs: cfg.AllowGIDs,
			Logger: a.log, Metrics: a.metrics, Audit: a.audit, Clock: a.clock,
		})
		if err != nil {
			return fmt.Errorf("--socket %s: %w", cfg.Socket, err)
		}
		a.runners = append(a.runners, runner{"socket", srv.Run})
	}
	if cfg.Notify != "" && !cfg.Once {
		n, err := notify.Parse(cfg.Notify, notify.WithLogger(a.log), notify.WithClock(a.clock))
		if err != nil {
			return usageError("--notify %q: %v", cfg.Notify, err)
		}
		run := func(ctx context.Context) error { return n.Run(ctx, st) }
		if a.fileSink != nil {
			// Announce versions once their files are on disk, not at commit.
			run = func(ctx context.Context) error { return n.RunOn(ctx, a.fileSink.Written(), a.fileSink.Versions) }
		}
		a.runners = append(a.runners, runner{"notify", run})
	}
	return nil
}

// buildVault sets up the Vault client, login and token lifetime, and one
// source per credential set.
func (a *agent) buildVault() error {
	cfg := a.cfg
	client, err := vault.NewClient(vault.ClientConfig{Addr: cfg.VaultAddr, CACertFile: cfg.VaultCACert, Metrics: a.metrics})
	if err != nil {
		return usageError("--vault-addr/--vault-ca-cert: %v", err)
	}
	var method auth.Method
	switch cfg.Auth {
	case "kubernetes":
		method = auth.Kubernetes(cfg.Role, cfg.AuthMount, cfg.TokenFile)
	case "approle":
		method = auth.AppRole(cfg.AuthMount, cfg.RoleIDFile, cfg.SecretIDFile, cfg.SecretIDWrapped)
	case "token":
		tok, err := devToken(cfg.VaultTokenFile)
		if err != nil {
			return err
		}
		method = auth.Token(tok)
	}
	tokens := lease.New(client, method, lease.Options{
		RenewAt: cfg.RenewAt, Clock: a.clock, Logger: a.log, Metrics: a.metrics, Audit: a.audit,
	})
	a.tokens = tokens
	a.onceLogin = func(ctx context.Context) (func(), error) {
		lctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- tokens.Run(lctx) }()
		stop := func() { cancel(); <-errc }
		if err := tokens.WaitReady(ctx); err != nil {
			stop()
			return nil, fmt.Errorf("vault login: %w", err)
		}
		return stop, nil
	}
	a.runners = append(a.runners, runner{"token lifetime", tokens.Run})

	verifier, err := a.verifier()
	if err != nil {
		return err
	}
	for _, c := range cfg.Credentials {
		src := source.NewVault(client, c, a.store, source.Options{
			Refresh: cfg.Refresh, Clock: a.clock, Logger: a.log, Metrics: a.metrics, Audit: a.audit,
			Verifier: verifier, Tokens: tokens,
		})
		a.onces = append(a.onces, src.Once)
		a.runners = append(a.runners, runner{"source " + c.Name, src.Run})
	}
	return nil
}

// verifier is the blue/green check both sources ask, or nil. In --once
// mode (a classic init container) the app's verify hook is not running
// yet: the first version is published unchecked.
func (a *agent) verifier() (source.Verifier, error) {
	if a.cfg.VerifyURL == "" || a.cfg.Once {
		return nil, nil
	}
	v, err := verify.New(a.cfg.VerifyURL, verify.Options{})
	if err != nil {
		return nil, usageError("--verify-url %q: %v", a.cfg.VerifyURL, err)
	}
	return v, nil
}

// buildFileSource serves the embedded encrypted file instead of Vault (local
// development): same store, sinks, audit and metrics.
func (a *agent) buildFileSource() error {
	verifier, err := a.verifier()
	if err != nil {
		return err
	}
	src, err := source.NewFile(strings.TrimPrefix(a.cfg.Source, "file:"), a.cfg.MasterKeyFile, a.cfg.Credentials, a.store, source.Options{
		Refresh: a.cfg.Refresh, Clock: a.clock, Logger: a.log, Metrics: a.metrics, Audit: a.audit, Verifier: verifier,
	})
	if err != nil {
		return fmt.Errorf("--source %s: %w", a.cfg.Source, err)
	}
	a.closers = append(a.closers, src.Close)
	a.onces = append(a.onces, src.Once)
	a.runners = append(a.runners, runner{"file source", src.Run})
	return nil
}

// once fetches every credential, writes the files and returns: the classic
// init container's job.
func (a *agent) once(ctx context.Context) error {
	if a.onceLogin != nil {
		stop, err := a.onceLogin(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	for _, once := range a.onces {
		if err := once(ctx); err != nil {
			return err
		}
	}
	if a.fileSink != nil {
		if err := a.fileSink.WriteAll(); err != nil {
			return err
		}
	}
	a.log.Info("credentials written; exiting (--once)", "credentials", len(a.onces))
	return nil
}

// devToken reads the dev-only token: --vault-token-file, VAULT_TOKEN or
// ~/.vault-token, looked up as the operator CLI does.
func devToken(file string) (string, error) {
	tok, err := creds.VaultToken(file, osGetenv)
	if err != nil {
		return "", usageError("--auth token: %v", err)
	}
	return tok, nil
}
