package filesource

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/credlet/credlet/internal/securemem"
)

const (
	magic         = "CREDLETF"
	formatVersion = 1
	idLen         = 8
	nonceLen      = 12
	headerLen     = len(magic) + 1 + idLen + nonceLen // 29: the GCM additional data
	// MaxFileSize bounds what is read from disk: credential sets are
	// kilobytes, history included.
	MaxFileSize = 4 << 20
)

// Errors a reader of the file can tell apart with errors.Is.
var (
	ErrNotCredletFile = errors.New("not a credlet credentials file")
	ErrWrongKey       = errors.New("wrong master key")
	ErrCorrupt        = errors.New("credentials file is corrupt or was tampered with")
	ErrNoFile         = errors.New("credentials file does not exist")
)

// WrongKeyError says which key wrote the file and which one was offered.
type WrongKeyError struct{ FileKeyID, KeyID string }

func (e *WrongKeyError) Error() string {
	return fmt.Sprintf("wrong master key (file key id %s, yours %s)", e.FileKeyID, e.KeyID)
}

// Is makes errors.Is(err, ErrWrongKey) true.
func (e *WrongKeyError) Is(target error) bool { return target == ErrWrongKey }

// seal encrypts plaintext under k into the on-disk format.
func seal(k *Key, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	out := make([]byte, headerLen, headerLen+len(plaintext)+aead.Overhead())
	copy(out, magic)
	out[len(magic)] = formatVersion
	copy(out[len(magic)+1:], k.id[:])
	if _, err := rand.Read(out[headerLen-nonceLen : headerLen]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return aead.Seal(out, out[headerLen-nonceLen:headerLen], plaintext, out[:headerLen]), nil
}

// open decrypts data into a locked buffer the caller must Free. The
// plaintext is buf.Bytes()[:n].
func open(k *Key, data []byte) (buf *securemem.Buffer, n int, err error) {
	if len(data) < len(magic) || !bytes.Equal(data[:len(magic)], []byte(magic)) {
		return nil, 0, fmt.Errorf("%w (bad magic; was it written by credlet-agent creds?)", ErrNotCredletFile)
	}
	if len(data) < headerLen+16 {
		return nil, 0, fmt.Errorf("%w: %d bytes, shorter than a header and tag", ErrCorrupt, len(data))
	}
	if v := data[len(magic)]; v != formatVersion {
		return nil, 0, fmt.Errorf("%w: format version %d (this credlet reads version %d)", ErrNotCredletFile, v, formatVersion)
	}
	fileID := data[len(magic)+1 : len(magic)+1+idLen]
	if !bytes.Equal(fileID, k.id[:]) {
		return nil, 0, &WrongKeyError{FileKeyID: hex.EncodeToString(fileID), KeyID: k.ID()}
	}
	aead, err := newAEAD(k)
	if err != nil {
		return nil, 0, err
	}
	ct := data[headerLen:]
	buf, err = securemem.New(len(ct))
	if err != nil {
		return nil, 0, err
	}
	pt, err := aead.Open(buf.Bytes()[:0], data[headerLen-nonceLen:headerLen], ct, data[:headerLen])
	if err != nil {
		buf.Free()
		return nil, 0, fmt.Errorf("%w (authentication failed under key id %s)", ErrCorrupt, k.ID())
	}
	return buf, len(pt), nil
}

func newAEAD(k *Key) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.bytes())
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// readFile reads the encrypted file with a size bound.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoFile, path)
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// writeAtomic replaces path with data: a temp file in the same directory,
// fsync, rename, fsync of the directory. On error the temp file is removed
// and path is untouched.
func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, derr := os.Open(dir)
	if derr != nil {
		return nil // renamed; the directory sync is best effort
	}
	_ = d.Sync()
	return d.Close()
}
