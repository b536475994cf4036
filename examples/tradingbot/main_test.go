package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/agent/client"
	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/filesource"
	"github.com/credlet/credlet/internal/socketapi"
	"github.com/credlet/credlet/internal/source"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/testlog"
)

// TestBotFollowsRotation runs the bot against the real pipeline: encrypted
// file source → store → socket API → agent/client.Watch. A rotation written
// to the file reaches the running bot, which signs with the new version.
func TestBotFollowsRotation(t *testing.T) {
	dir, err := os.MkdirTemp("", "tb")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	key, err := filesource.GenerateKey(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	credFile := filepath.Join(dir, "c.enc")
	write := func(cas int, secret string) {
		t.Helper()
		err := filesource.Edit(context.Background(), credFile, key, func(d *filesource.Document) error {
			_, err := d.Put("secret/demo/exchange", map[string][]byte{"api_key": []byte("FAKE-key"), "api_secret": []byte(secret)}, cas, time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(0, "FAKE-secret-1")

	cred, _ := credspec.Parse("exchange=secret/demo/exchange")
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
	sock := filepath.Join(dir, "s.sock")
	srv, err := socketapi.New(st, socketapi.Options{Path: sock, AllowUIDs: []uint32{uint32(os.Getuid())}})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(ctx) }()
	}
	run(src.Run)
	run(srv.Run)
	out := &testlog.Buffer{}
	b := &bot{name: "exchange", keyField: "api_key", secretField: "api_secret", out: out}
	botDone := make(chan error, 1)
	go func() { botDone <- b.run(ctx, client.New(sock), 20*time.Millisecond) }()

	waitOut(t, out, "using exchange version 1")
	waitOut(t, out, "signed fake order #1 with exchange version 1")
	write(1, "FAKE-secret-2")
	waitOut(t, out, "now using exchange version 2 (was 1), no restart")
	waitOut(t, out, "with exchange version 2 (signature")
	cancel()
	if err := <-botDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if strings.Contains(out.String(), "FAKE") {
		t.Fatalf("the bot printed a value:\n%s", out)
	}
}

func TestBotRejectsUnknownSet(t *testing.T) {
	dir, err := os.MkdirTemp("", "tb")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, _ := store.New([]store.Declared{{Name: "exchange"}})
	defer st.Close()
	sock := filepath.Join(dir, "s.sock")
	srv, err := socketapi.New(st, socketapi.Options{Path: sock, AllowUIDs: []uint32{uint32(os.Getuid())}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	b := &bot{name: "nope", out: &testlog.Buffer{}}
	err = b.run(ctx, client.New(sock), time.Second)
	if err == nil || !strings.Contains(err.Error(), `no credential set "nope"`) {
		t.Fatalf("err = %v", err)
	}
	cancel()
	<-done
}

func waitOut(t *testing.T, out *testlog.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the bot's output:\n%s", want, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
