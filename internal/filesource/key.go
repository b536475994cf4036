package filesource

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/credlet/credlet/internal/securemem"
)

// KeySize is the master key length: AES-256.
const KeySize = 32

// ErrKeyFile is wrapped by every problem with the master key file.
var ErrKeyFile = errors.New("master key file")

// Key is a loaded master key. Its bytes live in locked memory; call Close
// when done.
type Key struct {
	buf *securemem.Buffer
	id  [8]byte
}

// ID is the key id written into file headers: hex of the first 8 bytes of
// SHA-256 of the key.
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

// Close wipes and frees the key.
func (k *Key) Close() {
	if k != nil && k.buf != nil {
		k.buf.Free()
	}
}

func (k *Key) bytes() []byte { return k.buf.Bytes()[:KeySize] }

// String never shows the key.
func (k *Key) String() string { return "[REDACTED key id " + k.ID() + "]" }

// LoadKey reads a master key file: 32 raw bytes, 64 hex digits or 44
// base64 characters, surrounding whitespace ignored. The file must not be
// readable or writable by group or others.
func LoadKey(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s: not a regular file", ErrKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: mode %04o lets group or others read it; allowed owner-only (chmod 0400 %s)", ErrKeyFile, path, perm, path)
	}
	if fi.Size() > 256 {
		return nil, fmt.Errorf("%w %s: %d bytes; want 32 raw bytes, 64 hex digits or 44 base64 characters", ErrKeyFile, path, fi.Size())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	defer securemem.Wipe(raw)
	buf, err := securemem.New(KeySize)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	if err := decodeKey(buf.Bytes()[:KeySize], raw); err != nil {
		buf.Free()
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	return newKey(buf), nil
}

func newKey(buf *securemem.Buffer) *Key {
	k := &Key{buf: buf}
	sum := sha256.Sum256(buf.Bytes()[:KeySize])
	copy(k.id[:], sum[:8])
	return k
}

// decodeKey decodes raw (raw bytes, hex or base64) into dst.
func decodeKey(dst, raw []byte) error {
	if len(raw) == KeySize {
		copy(dst, raw)
		return nil
	}
	s := strings.TrimSpace(string(raw)) // transient copy of an encoded key; short-lived
	switch {
	case len(s) == 2*KeySize:
		if _, err := hex.Decode(dst, []byte(s)); err == nil {
			return nil
		}
	case len(s) == base64.StdEncoding.EncodedLen(KeySize):
		if n, err := base64.StdEncoding.Decode(dst, []byte(s)); err == nil && n == KeySize {
			return nil
		}
	}
	return errors.New("want 32 raw bytes, 64 hex digits or 44 base64 characters (credlet-agent dev generates one)")
}

// GenerateKey writes a new random key to path as hex, mode 0400. It refuses
// to overwrite an existing file.
func GenerateKey(path string) (*Key, error) {
	buf, err := securemem.New(KeySize)
	if err != nil {
		return nil, err
	}
	if _, err := rand.Read(buf.Bytes()[:KeySize]); err != nil {
		buf.Free()
		return nil, err
	}
	enc := make([]byte, 2*KeySize+1)
	defer securemem.Wipe(enc)
	hex.Encode(enc, buf.Bytes()[:KeySize])
	enc[2*KeySize] = '\n'
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		buf.Free()
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w %s: already exists; not overwriting a key", ErrKeyFile, path)
		}
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	_, werr := f.Write(enc)
	if err := f.Sync(); werr == nil {
		werr = err
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		buf.Free()
		_ = os.Remove(path)
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, werr)
	}
	return newKey(buf), nil
}
