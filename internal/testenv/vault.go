package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/vault/api"
)

// DevRootToken is the root token of every Vault dev server started here.
// It is fake on purpose: the server lives for one test binary on 127.0.0.1.
const DevRootToken = "root-token-FAKE-for-tests"

// Mounts set up by StartVault (the dev server itself provides KV v2 at secret/).
const (
	KVMount      = "secret"
	TransitMount = "transit"
	AppRoleMount = "approle"
)

// defaultStartTimeout bounds a start when ctx carries no deadline.
const defaultStartTimeout = 90 * time.Second

// startContext bounds a server's start: ctx as given when it has a
// deadline, else ctx with defaultStartTimeout.
func startContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultStartTimeout)
}

// Vault is a Vault dev server (in-memory storage, unsealed, root token
// DevRootToken) on 127.0.0.1, started by StartVault. Its methods are safe for
// concurrent use.
type Vault struct {
	Addr      string // http://127.0.0.1:PORT
	RootToken string // DevRootToken
	LogFile   string // the server's output, inside its data dir (removed by Stop)

	cmd  *exec.Cmd
	dir  string
	done chan struct{} // closed once the process has exited

	stopOnce sync.Once
	stopErr  error

	auditMu sync.Mutex
	audits  map[string]string // file path -> audit device path
}

var errAddrInUse = errors.New("address already in use")

// StartVault starts `vault server -dev` on a free 127.0.0.1 port, waits until
// it reports healthy, mounts transit at transit/ and enables approle at
// approle/ (KV v2 at secret/ is the dev default). ctx bounds the start only
// (90 s when it has no deadline); the server runs until Stop or until the
// test binary exits: it runs in its own process group, and on Linux the
// kernel SIGKILLs it when the test binary dies, even by a panic, a -timeout
// or SIGKILL. The error wraps ErrBinaryMissing when there is no vault binary
// (see Binary).
func StartVault(ctx context.Context) (*Vault, error) {
	bin, err := Binary(BinVault)
	if err != nil {
		return nil, err
	}
	ctx, cancel := startContext(ctx)
	defer cancel()
	dir, err := newDataDir("vault")
	if err != nil {
		return nil, err
	}
	var v *Vault
	for attempt := 1; ; attempt++ {
		v, err = startVaultProcess(ctx, bin, dir)
		if err == nil {
			break
		}
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			_ = removeDataDir(dir)
			return nil, fmt.Errorf("start vault: %w", err)
		}
	}
	if err := v.setup(ctx); err != nil {
		_ = v.Stop()
		return nil, fmt.Errorf("start vault: %w", err)
	}
	return v, nil
}

func startVaultProcess(ctx context.Context, bin, dir string) (*Vault, error) {
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(dir, "vault.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()

	cmd := exec.Command(bin, "server", "-dev",
		"-dev-root-token-id="+DevRootToken,
		"-dev-listen-address="+listen,
		"-dev-no-store-token", // never write ~/.vault-token
	)
	cmd.Dir = dir
	cmd.Env = vaultEnv(dir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	v := &Vault{
		Addr:      "http://" + listen,
		RootToken: DevRootToken,
		LogFile:   logPath,
		cmd:       cmd,
		dir:       dir,
		done:      make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(v.done)
	}()
	if err := v.waitHealthy(ctx); err != nil {
		v.kill()
		tail := logTail(logPath)
		if strings.Contains(tail, "address already in use") {
			return nil, fmt.Errorf("%w: %s", errAddrInUse, listen)
		}
		return nil, fmt.Errorf("%w; vault log:\n%s", err, tail)
	}
	return v, nil
}

// vaultEnv is the environment minus VAULT_* (a developer's VAULT_TOKEN or
// VAULT_ADDR must not leak in), with HOME in the data dir.
func vaultEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+dir)
}

func (v *Vault) waitHealthy(ctx context.Context) error {
	hc := &http.Client{Timeout: time.Second, Transport: cleanhttp.DefaultTransport()}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// 200 means initialized, unsealed and active.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.Addr+"/v1/sys/health", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vault not healthy at %s: %w", v.Addr, ctx.Err())
		case <-v.done:
			return fmt.Errorf("vault exited during start: %v", v.cmd.ProcessState)
		case <-tick.C:
		}
	}
}

func (v *Vault) setup(ctx context.Context) error {
	c := v.Client()
	if err := c.Sys().MountWithContext(ctx, TransitMount, &api.MountInput{Type: "transit"}); err != nil {
		return fmt.Errorf("mount transit: %w", err)
	}
	if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, AppRoleMount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		return fmt.Errorf("enable approle: %w", err)
	}
	return nil
}

// Client returns a new client for v with the root token. It ignores the
// VAULT_* environment, does not retry, and times requests out after 30 s;
// change that on the client where a test needs it.
func (v *Vault) Client() *api.Client {
	c, err := v.NewClient("")
	if err != nil {
		panic(fmt.Sprintf("testenv: vault client: %v", err)) // only a malformed Addr gets here
	}
	c.SetToken(v.RootToken)
	return c
}

// NewClient returns a client for addr (v.Addr when empty, or a Proxy's
// "http://"+Addr) with no token, configured like Client.
func (v *Vault) NewClient(addr string) (*api.Client, error) {
	if addr == "" {
		addr = v.Addr
	}
	c, err := api.NewClient(&api.Config{
		Address:    addr,
		HttpClient: cleanhttp.DefaultPooledClient(),
		Timeout:    30 * time.Second,
		MaxRetries: 0,
	})
	if err != nil {
		return nil, err
	}
	c.ClearToken() // api.NewClient picks up $VAULT_TOKEN
	c.ClearNamespace()
	return c, nil
}

// HostPort returns the server's 127.0.0.1:PORT, e.g. as a Proxy target.
func (v *Vault) HostPort() string { return strings.TrimPrefix(v.Addr, "http://") }

// PID returns the server's process id (also its process group id).
func (v *Vault) PID() int { return v.cmd.Process.Pid }

// Pause stops the server with SIGSTOP and returns once every thread is
// stopped: connections are still accepted by the kernel but nothing answers,
// as with a hung server. Resume undoes it.
func (v *Vault) Pause() error {
	if err := v.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return waitStopped(v.PID(), true, 5*time.Second)
}

// Resume continues a paused server with SIGCONT and returns once it runs.
func (v *Vault) Resume() error {
	if err := v.signal(syscall.SIGCONT); err != nil {
		return err
	}
	return waitStopped(v.PID(), false, 5*time.Second)
}

func (v *Vault) signal(sig syscall.Signal) error {
	select {
	case <-v.done:
		return fmt.Errorf("vault (pid %d) is not running", v.PID())
	default:
	}
	if err := syscall.Kill(-v.PID(), sig); err != nil {
		return fmt.Errorf("signal vault (pid %d) %v: %w", v.PID(), sig, err)
	}
	return nil
}

// Stop terminates the server (paused or not), waits for it and removes its
// data dir. It is safe to call more than once.
func (v *Vault) Stop() error {
	v.stopOnce.Do(func() {
		v.terminate()
		v.stopErr = removeDataDir(v.dir)
	})
	return v.stopErr
}

// terminate asks the process group to exit, then kills it after 10 s.
func (v *Vault) terminate() {
	select {
	case <-v.done:
		return
	default:
	}
	pgid := -v.PID()
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	_ = syscall.Kill(pgid, syscall.SIGCONT) // a stopped process acts on SIGTERM only once continued
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		v.kill()
	}
}

func (v *Vault) kill() {
	_ = syscall.Kill(-v.PID(), syscall.SIGKILL)
	<-v.done
}

// logTail returns the end of a server log, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
