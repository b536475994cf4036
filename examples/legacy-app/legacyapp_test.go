// Package legacyapp tests the legacy-app example script against the real
// agent pipeline: encrypted file source → store → file sink (format=env).
package legacyapp

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/sink/file"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
)

func TestLegacyAppReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	key, err := filesource.GenerateKey(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	credFile := filepath.Join(dir, "c.enc")
	write := func(cas int, v string) {
		t.Helper()
		err := filesource.Edit(context.Background(), credFile, key, func(d *filesource.Document) error {
			_, err := d.Put("secret/demo/exchange", map[string][]byte{
				"api_key": []byte("FAKE-key-" + v), "api_secret": []byte("FAKE-it's-" + v),
			}, cas, time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(0, "1")
	cred, err := credspec.Parse("exchange=secret/demo/exchange;format=env")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New([]store.Declared{{Name: "exchange"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src, err := source.NewFile(credFile, filepath.Join(dir, "k"), []credspec.Credential{cred}, st, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	sink, err := file.New(st, []credspec.Credential{cred}, file.Options{Dir: secrets, UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range []func(context.Context) error{src.Run, sink.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(ctx) }()
	}
	defer wg.Wait()
	defer cancel()

	cmd := exec.Command("./legacy-app")
	cmd.Env = append(os.Environ(), "CREDLET_SECRETS_DIR="+secrets)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	expect := func(want string) {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("legacy-app exited before %q; output:\n%s", want, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if strings.Contains(l, "FAKE") {
					t.Fatalf("legacy-app printed a value: %s", l)
				}
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q; output:\n%s", want, strings.Join(seen, "\n"))
			}
		}
	}
	expect("loaded exchange version 1 (variables: API_KEY API_SECRET)")

	// The agent's --notify signal:SIGHUP:legacy-app finds it by this name.
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "legacy-app" {
		t.Fatalf("process name %q (%v), want legacy-app", comm, err)
	}

	write(1, "2")
	versionFile := filepath.Join(secrets, "exchange", "..data", "VERSION")
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(versionFile)
		if strings.TrimSpace(string(b)) == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink never wrote version 2 (VERSION %q)", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect("SIGHUP received, reloading")
	expect("now version 2 (was 1), no restart")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	expect("stopping")
	_, _ = io.Copy(io.Discard, stdout)
}
