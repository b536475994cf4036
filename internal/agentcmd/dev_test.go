package agentcmd

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/filesource"
)

// TestDevSeed: the first start writes a 0400 key and the demo sets; a second
// start keeps both (rotations survive), and the demo sets keep their
// delivery options next to sets an operator added.
func TestDevSeed(t *testing.T) {
	l := newDevLayout(t.TempDir())
	created, err := devSeed(context.Background(), l)
	if err != nil || !created {
		t.Fatalf("first seed: %v %v", created, err)
	}
	fi, err := os.Stat(l.Key)
	if err != nil || fi.Mode().Perm() != 0o400 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	key, err := filesource.LoadKey(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	if err := filesource.Edit(context.Background(), l.Credentials, key, func(d *filesource.Document) error {
		_, err := d.Put("secret/team/extra", map[string][]byte{"token": []byte("FAKE")}, 0, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	created, err = devSeed(context.Background(), l)
	if err != nil || created {
		t.Fatalf("second seed: %v %v", created, err)
	}
	creds, err := devCredentials(l)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range creds {
		got = append(got, c.String())
	}
	want := "broker-oauth=secret/demo/broker-oauth;fields=refresh_token exchange=secret/demo/exchange;fields=api_key,api_secret;format=env extra=secret/team/extra"
	if strings.Join(got, " ") != want {
		t.Fatalf("credentials\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	d, err := filesource.Read(l.Credentials, key)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Wipe()
	r, _ := d.Get("secret/demo/exchange", 0)
	if !strings.HasPrefix(string(r.Fields["api_key"]), "FAKE-demo-") {
		t.Fatal("demo values are not obviously fake")
	}
}

func TestDevUsage(t *testing.T) {
	if _, err := devListen("nonsense"); err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("devListen: %v", err)
	}
	addr, err := devListen("127.0.0.1:0")
	if err != nil || strings.HasSuffix(addr, ":0") {
		t.Fatalf("devListen port 0: %q %v", addr, err)
	}
	long := "/tmp/" + strings.Repeat("d", 100)
	err = devCommand(context.Background(), []string{"--dir", long}, os.Stdout, os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "too long for a Unix socket path") {
		t.Fatalf("long dir: %v", err)
	}
	if _, statErr := os.Stat(long); statErr == nil {
		os.RemoveAll(long)
		t.Fatal("a refused --dir was created")
	}
}
