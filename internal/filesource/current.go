package filesource

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// Current is the part of the document an agent serves: each set's current
// version, keyed by KV path. History is skipped without being copied.
type Current struct {
	Credentials map[string]*CurrentSet `json:"credentials"`
}

// CurrentSet is one set's current version. Fields are fresh slices the
// caller takes over (deleting them from the map) or leaves to Wipe.
type CurrentSet struct {
	Version   int               `json:"version"`
	CreatedAt time.Time         `json:"created_at"`
	DeletedAt time.Time         `json:"deleted_at"` // zero: live
	Fields    map[string][]byte `json:"fields"`
}

// Wipe zeroes every field value still held.
func (c *Current) Wipe() {
	for _, e := range c.Credentials {
		if e != nil {
			securemem.WipeFields(e.Fields)
		}
	}
}

// ReadFile reads the encrypted file at path with a size bound. A missing
// file is ErrNoFile.
func ReadFile(path string) ([]byte, error) { return readFile(path) }

// DecodeCurrent opens data (the file's bytes) with k and decodes the
// current versions out of the locked plaintext buffer, which is freed. A
// wrong key is a *WrongKeyError; a file that does not open or decode
// matches ErrCorrupt or ErrNotCredletFile.
func DecodeCurrent(k *Key, data []byte) (*Current, error) {
	buf, n, err := open(k, data)
	if err != nil {
		return nil, err
	}
	var c Current
	err = json.Unmarshal(buf.Bytes()[:n], &c)
	buf.Free()
	if err != nil {
		c.Wipe()
		return nil, fmt.Errorf("%w: decrypted but not valid JSON", ErrCorrupt)
	}
	return &c, nil
}
