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
	if err := a.buildStore(); err != nil {
		return err
	}
	a.metrics.RefreshInterval.Set(a.cfg.Refresh.Seconds())
	if a.cfg.fileSource() {
		if err := a.buildFileSource(); err != nil {
			return err
		}
	} else if err := a.buildVault(); err != nil {
		return err
	}
	if err := a.buildFileSink(); err != nil {
		return err
	}
	if err := a.buildSocket(); err != nil {
		return err
	}
	return a.buildNotify()
}

// buildStore declares every credential set (for the file source without
// --credential: every set the file defines).
func (a *agent) buildStore() error {
	if a.cfg.fileSource() && len(a.cfg.Credentials) == 0 {
		creds, err := filesource.Names(strings.TrimPrefix(a.cfg.Source, "file:"), a.cfg.MasterKeyFile)
		if err != nil {
			return fmt.Errorf("--source %s: %w", a.cfg.Source, err)
		}
		a.cfg.Credentials = creds
	}
	decl := make([]store.Declared, 0, len(a.cfg.Credentials))
	for _, c := range a.cfg.Credentials {
		decl = append(decl, store.Declared{Name: c.Name, Optional: c.Optional})
		a.metrics.InitCredential(c.Name)
	}
	st, err := store.New(decl)
	if err != nil {
		return err
	}
	a.store = st
	a.closers = append(a.closers, st.Close)
	return nil
}

// buildFileSink writes files under --secrets-dir, when set.
func (a *agent) buildFileSink() error {
	cfg := a.cfg
	if cfg.SecretsDir == "" {
		return nil
	}
	sink, err := file.New(a.store, cfg.Credentials, file.Options{
		Dir: cfg.SecretsDir, UID: cfg.FileUID, GID: cfg.FileGID, Mode: cfg.FileMode,
		Logger: a.log, Metrics: a.metrics, Clock: a.clock,
	})
	if err != nil {
		return fmt.Errorf("--secrets-dir %s: %w", cfg.SecretsDir, err)
	}
	a.fileSink = sink
	a.runners = append(a.runners, runner{"file sink", sink.Run})
	return nil
}

// buildSocket serves --socket, when set and not --once.
func (a *agent) buildSocket() error {
	cfg := a.cfg
	if cfg.Socket == "" || cfg.Once {
		return nil
	}
	allowU := cfg.AllowUIDs
	if len(allowU) == 0 {
		allowU = []uint32{uint32(os.Getuid())}
	}
	srv, err := socketapi.New(a.store, socketapi.Options{
		Path: cfg.Socket, AllowUIDs: allowU, AllowGIDs: cfg.AllowGIDs,
		Logger: a.log, Metrics: a.metrics, Audit: a.audit, Clock: a.clock,
	})
	if err != nil {
		return fmt.Errorf("--socket %s: %w", cfg.Socket, err)
	}
	a.runners = append(a.runners, runner{"socket", srv.Run})
	return nil
}

// buildNotify announces new versions (--notify), when set and not --once:
// once their files are on disk when files are delivered, else at commit.
func (a *agent) buildNotify() error {
	cfg := a.cfg
	if cfg.Notify == "" || cfg.Once {
		return nil
	}
	n, err := notify.Parse(cfg.Notify, notify.Options{Logger: a.log, Clock: a.clock})
	if err != nil {
		return usageError("--notify %q: %v", cfg.Notify, err)
	}
	run := func(ctx context.Context) error { return n.Run(ctx, a.store) }
	if a.fileSink != nil {
		run = func(ctx context.Context) error { return n.RunOn(ctx, a.fileSink.Written(), a.fileSink.Versions) }
	}
	a.runners = append(a.runners, runner{"notify", run})
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
	case "jwt":
		method = auth.JWT(cfg.Role, cfg.AuthMount, cfg.TokenFile)
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
