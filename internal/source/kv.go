package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/vault"
)

// versionMeta is KV v2's metadata of one version.
type versionMeta struct {
	Version      int       `json:"version"`
	CreatedTime  time.Time `json:"created_time"`
	DeletionTime string    `json:"deletion_time"`
	Destroyed    bool      `json:"destroyed"`
}

// gone reports whether the version was deleted (before now) or destroyed.
func (m versionMeta) gone(now time.Time) bool {
	if m.Destroyed {
		return true
	}
	t, ok := m.deletion()
	return ok && !t.After(now)
}

func (m versionMeta) deletion() (time.Time, bool) {
	if m.DeletionTime == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, m.DeletionTime)
	return t, err == nil
}

func (m versionMeta) describe() string {
	if m.Destroyed {
		return "destroyed"
	}
	return "deleted at " + m.DeletionTime
}

// metadata is the part of KV v2's secret metadata the source uses.
type metadata struct {
	CurrentVersion int                    `json:"current_version"`
	Versions       map[string]versionMeta `json:"versions"`
}

var (
	errNotFound = errors.New("no secret at this path")
	errDeleted  = errors.New("version deleted or destroyed")
)

// readMetadata reads MOUNT/metadata/PATH: no secret values.
func (v *Vault) readMetadata(ctx context.Context) (metadata, error) {
	resp, err := v.c.Logical().ReadRawWithContext(vault.WithOp(ctx, vault.OpKVMetadata), v.cred.Mount+"/metadata/"+v.cred.Path)
	defer closeBody(resp)
	if err != nil {
		if vault.StatusCode(err) == http.StatusNotFound {
			return metadata{}, fmt.Errorf("%s: %w", v.cred.KVPath(), errNotFound)
		}
		return metadata{}, vault.WrapResponse(vault.OpKVMetadata, resp, err)
	}
	var out struct {
		Data metadata `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, int64(v.o.MaxBody))).Decode(&out); err != nil {
		return metadata{}, fmt.Errorf("%s: metadata: %w", vault.OpKVMetadata, err)
	}
	return out.Data, nil
}

// readData reads MOUNT/data/PATH at version (0: the latest). The caller
// wipes the returned raw values. A deleted or destroyed version is errDeleted
// with its metadata.
func (v *Vault) readData(ctx context.Context, version int) (map[string]json.RawMessage, versionMeta, error) {
	path := v.cred.Mount + "/data/" + v.cred.Path
	var params map[string][]string
	if version > 0 {
		params = map[string][]string{"version": {strconv.Itoa(version)}}
	}
	resp, err := v.c.Logical().ReadRawWithDataWithContext(vault.WithOp(ctx, vault.OpKVRead), path, params)
	defer closeBody(resp)
	if err != nil {
		if vault.StatusCode(err) == http.StatusNotFound && resp != nil {
			// A deleted version answers 404 with its metadata.
			raw, meta, perr := v.parseData(resp)
			wipeRaw(raw)
			if perr == nil && meta.Version > 0 && (meta.Destroyed || meta.DeletionTime != "") {
				return nil, meta, errDeleted
			}
			return nil, versionMeta{}, fmt.Errorf("%s: %w", v.cred.KVPath(), errNotFound)
		}
		return nil, versionMeta{}, vault.WrapResponse(vault.OpKVRead, resp, err)
	}
	raw, meta, err := v.parseData(resp)
	if err != nil {
		wipeRaw(raw)
		return nil, versionMeta{}, fmt.Errorf("%s: %w", vault.OpKVRead, err)
	}
	if raw == nil {
		if meta.Destroyed || meta.DeletionTime != "" {
			return nil, meta, errDeleted
		}
		return nil, meta, fmt.Errorf("%s: version %d has no data", vault.OpKVRead, meta.Version)
	}
	return raw, meta, nil
}

func (v *Vault) parseData(resp *api.Response) (map[string]json.RawMessage, versionMeta, error) {
	body, err := readBody(resp.Body, resp.ContentLength, v.o.MaxBody)
	if err != nil {
		return nil, versionMeta{}, err
	}
	defer clear(body)
	var out struct {
		Data struct {
			Data     map[string]json.RawMessage `json:"data"`
			Metadata versionMeta                `json:"metadata"`
		} `json:"data"`
	}
	err = json.Unmarshal(body, &out)
	return out.Data.Data, out.Data.Metadata, err
}

func wipeRaw(raw map[string]json.RawMessage) {
	for _, r := range raw {
		clear(r)
	}
}

func wipeFields(fields map[string][]byte) {
	for _, f := range fields {
		clear(f)
	}
}

// closeBody drains a little of what is left (so the connection is reused)
// and closes the body.
func closeBody(resp *api.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
