package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/vault"
)

// Client reads and writes KV v2 secrets through one API client. Timeouts
// and retries are the API client's (vault.NewClient): the agent and the
// operator CLI each build theirs with their own policy.
type Client struct {
	API     *api.Client
	MaxBody int // largest response body read; 0: vault.DefaultMaxBody
}

// New returns a Client on c.
func New(c *api.Client) *Client { return &Client{API: c} }

func (c *Client) maxBody() int {
	if c.MaxBody > 0 {
		return c.MaxBody
	}
	return vault.DefaultMaxBody
}

// VersionMeta is KV v2's metadata of one version: no secret values.
type VersionMeta struct {
	Version      int
	CreatedTime  time.Time
	DeletionTime time.Time // zero: no deletion done or scheduled
	Destroyed    bool
}

// Gone reports whether the version was deleted (at or before now) or
// destroyed.
func (m VersionMeta) Gone(now time.Time) bool {
	return m.Destroyed || (!m.DeletionTime.IsZero() && !m.DeletionTime.After(now))
}

// Describe says in a few words why the version is gone.
func (m VersionMeta) Describe() string {
	if m.Destroyed {
		return "destroyed"
	}
	return "deleted at " + m.DeletionTime.UTC().Format(time.RFC3339Nano)
}

// Metadata is a secret's KV v2 metadata: its versions and custom metadata.
type Metadata struct {
	CurrentVersion int
	OldestVersion  int
	MaxVersions    int
	CreatedTime    time.Time
	UpdatedTime    time.Time
	CustomMetadata map[string]string
	Versions       map[int]VersionMeta
}

// Newest returns the versions, newest first.
func (m Metadata) Newest() []VersionMeta {
	out := make([]VersionMeta, 0, len(m.Versions))
	for _, v := range m.Versions {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b VersionMeta) int { return b.Version - a.Version })
	return out
}

// wireVersion is one version's metadata as Vault sends it.
type wireVersion struct {
	Version      int       `json:"version"`
	CreatedTime  time.Time `json:"created_time"`
	DeletionTime string    `json:"deletion_time"` // "" when none
	Destroyed    bool      `json:"destroyed"`
}

func (w wireVersion) decode(version int) (VersionMeta, error) {
	m := VersionMeta{Version: version, CreatedTime: w.CreatedTime, Destroyed: w.Destroyed}
	if w.DeletionTime != "" {
		t, err := time.Parse(time.RFC3339Nano, w.DeletionTime)
		if err != nil {
			return VersionMeta{}, fmt.Errorf("%w: version %d: deletion_time %q: %w", vault.ErrBadResponse, version, w.DeletionTime, err)
		}
		m.DeletionTime = t
	}
	return m, nil
}

// Metadata reads MOUNT/metadata/PATH. No secret at the path matches
// vault.ErrNotFound.
func (c *Client) Metadata(ctx context.Context, mount, p string) (Metadata, error) {
	resp, err := c.API.Logical().ReadRawWithContext(vault.WithOp(ctx, vault.OpKVMetadata), mount+"/metadata/"+p)
	defer vault.CloseBody(resp)
	if err != nil {
		return Metadata{}, vault.WrapResponse(vault.OpKVMetadata, resp, err)
	}
	var out struct {
		Data struct {
			CurrentVersion int                    `json:"current_version"`
			OldestVersion  int                    `json:"oldest_version"`
			MaxVersions    int                    `json:"max_versions"`
			CreatedTime    time.Time              `json:"created_time"`
			UpdatedTime    time.Time              `json:"updated_time"`
			CustomMetadata map[string]string      `json:"custom_metadata"`
			Versions       map[string]wireVersion `json:"versions"`
		} `json:"data"`
	}
	if err := vault.DecodeBody(resp, c.maxBody(), &out); err != nil {
		return Metadata{}, fmt.Errorf("%s %s/%s: %w: %w", vault.OpKVMetadata, mount, p, vault.ErrBadResponse, err)
	}
	d := out.Data
	m := Metadata{
		CurrentVersion: d.CurrentVersion, OldestVersion: d.OldestVersion, MaxVersions: d.MaxVersions,
		CreatedTime: d.CreatedTime, UpdatedTime: d.UpdatedTime, CustomMetadata: d.CustomMetadata,
		Versions: make(map[int]VersionMeta, len(d.Versions)),
	}
	for k, w := range d.Versions {
		n, err := strconv.Atoi(k)
		if err != nil {
			return Metadata{}, fmt.Errorf("%s %s/%s: %w: version key %q", vault.OpKVMetadata, mount, p, vault.ErrBadResponse, k)
		}
		if m.Versions[n], err = w.decode(n); err != nil {
			return Metadata{}, err
		}
	}
	return m, nil
}

// Version is one version of a secret as read.
type Version struct {
	// Data holds the fields' raw JSON values; the caller wipes them (Wipe)
	// and decodes each with Value. Nil when the version is gone.
	Data           map[string]json.RawMessage
	Meta           VersionMeta
	CustomMetadata map[string]string // the secret's custom metadata (Vault 1.9+)
}

// Wipe zeroes the raw values.
func (v *Version) Wipe() { vault.WipeRaw(v.Data) }

// DeletedError is a read of a version that is deleted or destroyed. It
// matches vault.ErrDeleted and carries the version's metadata.
type DeletedError struct {
	Path string
	Meta VersionMeta
}

func (e *DeletedError) Error() string {
	return fmt.Sprintf("%s version %d is %s", e.Path, e.Meta.Version, e.Meta.Describe())
}

// Is makes errors.Is(err, vault.ErrDeleted) true.
func (e *DeletedError) Is(target error) bool { return target == vault.ErrDeleted }

// Read reads MOUNT/data/PATH at version (0: the current one) into one body
// buffer that is wiped once decoded. A deleted or destroyed version is a
// *DeletedError; nothing at the path (or no such version) matches
// vault.ErrNotFound.
func (c *Client) Read(ctx context.Context, mount, p string, version int) (Version, error) {
	var params map[string][]string
	if version > 0 {
		params = map[string][]string{"version": {strconv.Itoa(version)}}
	}
	full := mount + "/" + p
	resp, err := c.API.Logical().ReadRawWithDataWithContext(vault.WithOp(ctx, vault.OpKVRead), mount+"/data/"+p, params)
	defer vault.CloseBody(resp)
	if err != nil {
		if vault.StatusCode(err) == http.StatusNotFound && resp != nil {
			// A deleted version answers 404 with its metadata.
			v, perr := c.decodeVersion(resp)
			v.Wipe()
			if perr == nil && v.Meta.Version > 0 && (v.Meta.Destroyed || !v.Meta.DeletionTime.IsZero()) {
				return Version{Meta: v.Meta}, &DeletedError{Path: full, Meta: v.Meta}
			}
		}
		return Version{}, vault.WrapResponse(vault.OpKVRead, resp, err)
	}
	v, err := c.decodeVersion(resp)
	if err != nil {
		v.Wipe()
		return Version{}, fmt.Errorf("%s %s: %w: %w", vault.OpKVRead, full, vault.ErrBadResponse, err)
	}
	if v.Data == nil {
		if v.Meta.Destroyed || !v.Meta.DeletionTime.IsZero() {
			return Version{Meta: v.Meta}, &DeletedError{Path: full, Meta: v.Meta}
		}
		return Version{}, fmt.Errorf("%s %s: %w: version %d has no data", vault.OpKVRead, full, vault.ErrBadResponse, v.Meta.Version)
	}
	return v, nil
}

func (c *Client) decodeVersion(resp *api.Response) (Version, error) {
	var out struct {
		Data struct {
			Data     map[string]json.RawMessage `json:"data"`
			Metadata struct {
				wireVersion
				CustomMetadata map[string]string `json:"custom_metadata"`
			} `json:"metadata"`
		} `json:"data"`
	}
	err := vault.DecodeBody(resp, c.maxBody(), &out)
	v := Version{Data: out.Data.Data, CustomMetadata: out.Data.Metadata.CustomMetadata}
	if err != nil {
		return v, err
	}
	v.Meta, err = out.Data.Metadata.decode(out.Data.Metadata.Version)
	return v, err
}

// NoCAS writes without check-and-set.
const NoCAS = -1

// Write stores fields as a new version of MOUNT/PATH and returns its
// number. cas is the version the write must follow (0: the secret must not
// exist; NoCAS: no check). A version that moved is a *vault.CASError.
// Values must be UTF-8: KV v2 stores strings.
func (c *Client) Write(ctx context.Context, mount, p string, fields map[string][]byte, cas int) (int, error) {
	data := make(map[string]string, len(fields))
	for k, v := range fields {
		data[k] = string(v)
	}
	req := map[string]any{"data": data}
	if cas >= 0 {
		req["options"] = map[string]any{"cas": cas}
	}
	body, err := json.Marshal(req)
	clear(data)
	if err != nil {
		return 0, err
	}
	defer clear(body)
	resp, err := c.API.Logical().WriteRawWithContext(vault.WithOp(ctx, vault.OpKVWrite), mount+"/data/"+p, body)
	defer vault.CloseBody(resp)
	if err != nil {
		if cas >= 0 && vault.StatusCode(err) == http.StatusBadRequest {
			if cerr := c.casConflict(ctx, mount, p, cas); cerr != nil {
				return 0, cerr
			}
		}
		return 0, vault.Wrap(vault.OpKVWrite, err)
	}
	var out struct {
		Data struct {
			Version int `json:"version"`
		} `json:"data"`
	}
	if err := vault.DecodeBody(resp, c.maxBody(), &out); err != nil || out.Data.Version == 0 {
		return 0, fmt.Errorf("%s %s/%s: %w: no version in the answer (%v)", vault.OpKVWrite, mount, p, vault.ErrBadResponse, err)
	}
	return out.Data.Version, nil
}

// casConflict tells a refused check-and-set from other bad requests: it
// returns a *vault.CASError when the current version is not cas.
func (c *Client) casConflict(ctx context.Context, mount, p string, cas int) error {
	m, err := c.Metadata(ctx, mount, p)
	switch {
	case err == nil && m.CurrentVersion != cas:
		return &vault.CASError{Path: mount + "/" + p, Want: cas, Have: m.CurrentVersion}
	case errors.Is(err, vault.ErrNotFound) && cas != 0:
		return &vault.CASError{Path: mount + "/" + p, Want: cas}
	}
	return nil
}

// WriteCustomMetadata replaces the secret's custom metadata (keys and
// values as KV v2 allows: up to 64 pairs). Other metadata settings stay.
func (c *Client) WriteCustomMetadata(ctx context.Context, mount, p string, custom map[string]string) error {
	if custom == nil {
		custom = map[string]string{}
	}
	body, err := json.Marshal(map[string]any{"custom_metadata": custom})
	if err != nil {
		return err
	}
	resp, err := c.API.Logical().WriteRawWithContext(vault.WithOp(ctx, vault.OpKVWrite), mount+"/metadata/"+p, body)
	vault.CloseBody(resp)
	return vault.Wrap(vault.OpKVWrite, err)
}

// Delete soft-deletes the given versions of MOUNT/PATH.
func (c *Client) Delete(ctx context.Context, mount, p string, versions ...int) error {
	body, err := json.Marshal(map[string]any{"versions": versions})
	if err != nil {
		return err
	}
	resp, err := c.API.Logical().WriteRawWithContext(vault.WithOp(ctx, vault.OpKVDelete), mount+"/delete/"+p, body)
	vault.CloseBody(resp)
	return vault.Wrap(vault.OpKVDelete, err)
}

// List returns the names directly under MOUNT/PREFIX, sorted, folders
// ending in "/". An empty or missing prefix is an empty list.
func (c *Client) List(ctx context.Context, mount, prefix string) ([]string, error) {
	s, err := c.API.Logical().ListWithContext(vault.WithOp(ctx, vault.OpKVList), mount+"/metadata/"+prefix)
	if err != nil {
		return nil, vault.Wrap(vault.OpKVList, err)
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	keys, ok := s.Data["keys"].([]any)
	if !ok {
		return nil, fmt.Errorf("%s %s/%s: %w: no keys list", vault.OpKVList, mount, prefix, vault.ErrBadResponse)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		str, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%s %s/%s: %w: key %v is not a string", vault.OpKVList, mount, prefix, vault.ErrBadResponse, k)
		}
		out = append(out, str)
	}
	slices.Sort(out)
	return out, nil
}

// ListRecursive returns every secret's path under MOUNT/PREFIX (relative
// to the mount, without a trailing "/"), sorted.
func (c *Client) ListRecursive(ctx context.Context, mount, prefix string) ([]string, error) {
	prefix = strings.Trim(prefix, "/")
	names, err := c.List(ctx, mount, prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		full := path.Join(prefix, n)
		if !strings.HasSuffix(n, "/") {
			out = append(out, full)
			continue
		}
		sub, err := c.ListRecursive(ctx, mount, full)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	slices.Sort(out)
	return out, nil
}

// MountInfo is what is mounted at a path.
type MountInfo struct {
	Path    string // the mount's path, without slashes
	Type    string // "kv", "transit", ...
	Version string // KV's options.version: "2" for KV v2
}

// IsKV2 reports whether the mount is a KV version 2 engine.
func (m MountInfo) IsKV2() bool { return (m.Type == "kv" || m.Type == "generic") && m.Version == "2" }

// Mount asks Vault what is mounted at mount/ (sys/internal/ui/mounts, the
// request the vault CLI makes before a kv command). Vault answers 403 both
// for "no such mount" and for "no access": that matches
// vault.ErrPermission.
func (c *Client) Mount(ctx context.Context, mount string) (MountInfo, error) {
	resp, err := c.API.Logical().ReadRawWithContext(vault.WithOp(ctx, vault.OpMount), "sys/internal/ui/mounts/"+mount)
	defer vault.CloseBody(resp)
	if err != nil {
		return MountInfo{}, vault.Wrap(vault.OpMount, err)
	}
	var out struct {
		Data struct {
			Path    string `json:"path"`
			Type    string `json:"type"`
			Options struct {
				Version string `json:"version"`
			} `json:"options"`
		} `json:"data"`
	}
	if err := vault.DecodeBody(resp, c.maxBody(), &out); err != nil {
		return MountInfo{}, fmt.Errorf("%s %s: %w: %w", vault.OpMount, mount, vault.ErrBadResponse, err)
	}
	return MountInfo{Path: strings.Trim(out.Data.Path, "/"), Type: out.Data.Type, Version: out.Data.Options.Version}, nil
}

// Capabilities returns the token's capabilities on an API path
// (sys/capabilities-self, which the default policy allows).
func (c *Client) Capabilities(ctx context.Context, apiPath string) ([]string, error) {
	body, err := json.Marshal(map[string]any{"paths": []string{apiPath}})
	if err != nil {
		return nil, err
	}
	resp, err := c.API.Logical().WriteRawWithContext(vault.WithOp(ctx, vault.OpOther), "sys/capabilities-self", body)
	defer vault.CloseBody(resp)
	if err != nil {
		return nil, vault.Wrap(vault.OpOther, err)
	}
	var out struct {
		Data struct {
			Capabilities []string `json:"capabilities"`
		} `json:"data"`
	}
	if err := vault.DecodeBody(resp, c.maxBody(), &out); err != nil {
		return nil, fmt.Errorf("capabilities %s: %w: %w", apiPath, vault.ErrBadResponse, err)
	}
	return out.Data.Capabilities, nil
}
