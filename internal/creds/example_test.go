package creds_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/credlet/credlet/internal/creds"
	"github.com/credlet/credlet/internal/filesource"
)

// An operator creates a credential set and rotates one field, as
// `credlet-agent creds put` and `rotate` do. Against Vault, Open gets a
// Config with Source "vault" and VaultConfig instead.
func Example() {
	dir, _ := os.MkdirTemp("", "creds-example")
	defer os.RemoveAll(dir)
	key, _ := filesource.GenerateKey(filepath.Join(dir, "master.key"))
	key.Close()
	b, err := creds.Open(creds.Config{Source: "file:" + filepath.Join(dir, "credentials.enc"), MasterKeyFile: filepath.Join(dir, "master.key")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	ctx := context.Background()
	run := func(stdin string, args ...string) {
		var out strings.Builder
		err := creds.Run(ctx, b, creds.Invocation{Command: args[0], Args: args[1:]}, strings.NewReader(stdin), &out, os.Stderr)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		// Drop the file's path from the output.
		fmt.Print(strings.ReplaceAll(out.String(), filepath.Join(dir, "credentials.enc"), "FILE"))
	}
	run("FAKE-key-1\n", "put", "secret/partners/acme/zerodha", "api_key=-")
	run("FAKE-key-2\n", "rotate", "secret/partners/acme/zerodha", "api_key=-")
	run("FAKE-key-3\n", "put", "secret/partners/acme/zerodha", "api_key=-")
	// Output:
	// created secret/partners/acme/zerodha version 1 on credentials file FILE (fields set: api_key)
	// wrote secret/partners/acme/zerodha version 2 on top of version 1 on credentials file FILE (fields set: api_key)
	// error: secret/partners/acme/zerodha already exists at version 2 (put creates; use rotate to write a new version)
}
