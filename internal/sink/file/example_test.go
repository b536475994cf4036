package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/sink/file"
	"github.com/credlet/credlet/internal/store"
)

// The agent wires a sink to the store; a legacy app reads
// <dir>/<name>/<field>, or ..data/ for several fields of one version.
func Example() {
	dir, _ := os.MkdirTemp("", "secrets")
	defer os.RemoveAll(dir)
	c, _ := credspec.Parse("zerodha=secret/partners/acme/zerodha")
	st, _ := store.New([]store.Declared{{Name: c.Name}})
	defer st.Close()
	sink, err := file.New(st, []credspec.Credential{c}, file.Options{Dir: dir, UID: -1, GID: -1})
	if err != nil {
		panic(err)
	}
	_ = st.Commit("zerodha", store.Meta{Version: 1}, map[string][]byte{"api_key": []byte("FAKE-api-key-123")})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sink.Run(ctx) }()
	for range 1000 { // wait for the first version to land
		if b, _ := os.ReadFile(filepath.Join(dir, "zerodha", "..data", "VERSION")); string(b) == "1\n" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	key, _ := os.ReadFile(filepath.Join(dir, "zerodha", "..data", "api_key"))
	fi, _ := os.Stat(filepath.Join(dir, "zerodha", "..data", "api_key"))
	fmt.Println(len(key), fi.Mode())
	cancel()
	fmt.Println(<-done)
	// Output:
	// 16 -r--------
	// <nil>
}
