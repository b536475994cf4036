package filesource

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/credlet/credlet/internal/credspec"
)

// Names lists the credential sets the file at path defines, one per KV
// path, named after the path's last segment ("secret/demo/exchange" is
// "exchange"), with default delivery options. Use it to declare the store's
// sets when the agent runs with --source file:PATH and no --credential
// flags. Two paths ending in the same name are an error: name them with
// --credential NAME=PATH instead.
func Names(path, keyFile string) ([]credspec.Credential, error) {
	k, err := LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	buf, n, err := open(k, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer buf.Free()
	// Only the keys: field values are skipped by the decoder, not copied.
	var doc struct {
		Credentials map[string]struct {
			Version int `json:"version"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(buf.Bytes()[:n], &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: decrypted but not valid JSON: %v", path, ErrCorrupt, err)
	}
	paths := make([]string, 0, len(doc.Credentials))
	for p := range doc.Credentials {
		paths = append(paths, p)
	}
	return credentialsFor(paths)
}

func credentialsFor(paths []string) ([]credspec.Credential, error) {
	slices.Sort(paths)
	byName := map[string]string{}
	out := make([]credspec.Credential, 0, len(paths))
	for _, p := range paths {
		name := NameFor(p)
		if other, dup := byName[name]; dup {
			return nil, fmt.Errorf("%w: %s and %s would both be delivered as %q; name them with --credential NAME=PATH", ErrInvalid, other, p, name)
		}
		byName[name] = p
		c, err := credspec.Build(name, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// NameFor derives a delivery name from a KV path: its last segment, lower
// case, with characters a name can't hold turned into '-'.
func NameFor(kvPath string) string {
	seg := kvPath[strings.LastIndexByte(kvPath, '/')+1:]
	var b strings.Builder
	for _, r := range strings.ToLower(seg) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-_")
	if len(name) > 63 {
		name = strings.Trim(name[:63], "-_")
	}
	if name == "" {
		name = "credential"
	}
	return name
}
