package filesource_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/credlet/credlet/internal/filesource"
)

// An operator tool writes a credential set, then rotates it with
// check-and-set, as `credlet-agent creds ... --source file:PATH` does.
func ExampleEdit() {
	dir, _ := os.MkdirTemp("", "filesource-example")
	defer os.RemoveAll(dir)
	key, err := filesource.GenerateKey(filepath.Join(dir, "master.key"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer key.Close()
	path := filepath.Join(dir, "credentials.enc")
	ctx := context.Background()

	_ = filesource.Edit(ctx, path, key, func(d *filesource.Document) error {
		_, err := d.Put("secret/demo/exchange", map[string][]byte{"api_key": []byte("FAKE-api-key-1")}, 0, time.Now())
		return err
	})
	_ = filesource.Edit(ctx, path, key, func(d *filesource.Document) error {
		v, err := d.Put("secret/demo/exchange", map[string][]byte{"api_key": []byte("FAKE-api-key-2")}, 1, time.Now())
		fmt.Println("wrote version", v)
		return err
	})
	err = filesource.Edit(ctx, path, key, func(d *filesource.Document) error {
		_, err := d.Put("secret/demo/exchange", map[string][]byte{"api_key": []byte("FAKE-api-key-3")}, 1, time.Now())
		return err
	})
	fmt.Println(err)
	// Output:
	// wrote version 2
	// secret/demo/exchange changed underneath you: expected version 1, it is now 2 (someone else wrote it; check history and retry)
}
