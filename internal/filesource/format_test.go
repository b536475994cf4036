package filesource

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestKey(t *testing.T, dir, name string) (*Key, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	k, err := GenerateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k, p
}

func TestLoadKeyFormats(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte{0xab}, KeySize)
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		wantErr string
	}{
		{name: "raw", content: raw, mode: 0o400},
		{name: "hex", content: []byte(hex.EncodeToString(raw) + "\n"), mode: 0o600},
		{name: "base64", content: []byte("  " + base64.StdEncoding.EncodeToString(raw) + "\n"), mode: 0o400},
		{name: "short", content: []byte("abcd"), mode: 0o400, wantErr: "want 32 raw bytes"},
		{name: "bad hex", content: []byte(strings.Repeat("zz", KeySize)), mode: 0o400, wantErr: "want 32 raw bytes"},
		{name: "group readable", content: raw, mode: 0o440, wantErr: "chmod 0400"},
		{name: "world readable", content: raw, mode: 0o644, wantErr: "mode 0644"},
	}
	want := newKey(mustBuf(t, raw)).ID()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(p, tt.content, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			k, err := LoadKey(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrKeyFile) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			if k.ID() != want {
				t.Fatalf("key id %s, want %s", k.ID(), want)
			}
			if strings.Contains(k.String(), hex.EncodeToString(raw)) {
				t.Fatal("String shows the key")
			}
		})
	}
}

func TestGenerateKeyRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	k, p := newTestKey(t, dir, "k")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Fatalf("mode %v, want 0400", fi.Mode().Perm())
	}
	again, err := LoadKey(p)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.ID() != k.ID() {
		t.Fatal("reloaded key differs")
	}
	if _, err := GenerateKey(p); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: err = %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	dir := t.TempDir()
	k, _ := newTestKey(t, dir, "k1")
	other, _ := newTestKey(t, dir, "k2")
	plain := []byte(`{"credentials":{}}`)
	sealed, err := seal(k, plain)
	if err != nil {
		t.Fatal(err)
	}
	sealed2, _ := seal(k, plain)
	if bytes.Equal(sealed[headerLen-nonceLen:headerLen], sealed2[headerLen-nonceLen:headerLen]) {
		t.Fatal("two writes used the same nonce")
	}
	if bytes.Contains(sealed, []byte("credentials")) {
		t.Fatal("plaintext visible in the sealed file")
	}
	buf, n, err := open(k, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes()[:n], plain) {
		t.Fatalf("round trip: %q", buf.Bytes()[:n])
	}
	buf.Free()

	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 1
		return c
	}
	tests := []struct {
		name   string
		key    *Key
		data   []byte
		target error
		msg    string
	}{
		{name: "wrong key", key: other, data: sealed, target: ErrWrongKey,
			msg: "wrong master key (file key id " + k.ID() + ", yours " + other.ID() + ")"},
		{name: "bad magic", key: k, data: flip(0), target: ErrNotCredletFile, msg: "bad magic"},
		{name: "future format", key: k, data: flip(len(magic)), target: ErrNotCredletFile, msg: "format version 0"},
		{name: "nonce tampered", key: k, data: flip(headerLen - 1), target: ErrCorrupt, msg: "authentication failed"},
		{name: "ciphertext tampered", key: k, data: flip(headerLen + 2), target: ErrCorrupt, msg: "authentication failed"},
		{name: "tag tampered", key: k, data: flip(len(sealed) - 1), target: ErrCorrupt, msg: "authentication failed"},
		{name: "truncated", key: k, data: sealed[:headerLen+3], target: ErrCorrupt, msg: "shorter than"},
		{name: "plain json", key: k, data: plain, target: ErrNotCredletFile, msg: "bad magic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := open(tt.key, tt.data)
			if !errors.Is(err, tt.target) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.target, tt.msg)
			}
		})
	}
}

func TestWrongKeyThroughRead(t *testing.T) {
	dir := t.TempDir()
	k, _ := newTestKey(t, dir, "k1")
	other, _ := newTestKey(t, dir, "k2")
	path := filepath.Join(dir, "creds.enc")
	err := Edit(context.Background(), path, k, func(d *Document) error {
		_, err := d.Put("secret/demo/x", map[string][]byte{"api_key": []byte("FAKE-1")}, 0, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Read(path, other)
	var wk *WrongKeyError
	if !errors.As(err, &wk) || wk.FileKeyID != k.ID() || wk.KeyID != other.ID() {
		t.Fatalf("err = %v", err)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Fatal("error is not one line")
	}
}
