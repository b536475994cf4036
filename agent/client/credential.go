package client

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

const redacted = "[REDACTED]"

// Credential is one version of a credential set.
type Credential struct {
	Name      string
	Version   int
	Fields    map[string]string // field name → value
	FetchedAt time.Time         // when the agent read this version from Vault
	ExpiresAt *time.Time        // nil when the version does not expire
}

// Field returns one field's value.
func (c *Credential) Field(name string) (string, bool) {
	v, ok := c.Fields[name]
	return v, ok
}

// FieldNames returns the field names, sorted.
func (c *Credential) FieldNames() []string {
	names := make([]string, 0, len(c.Fields))
	for k := range c.Fields {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// String describes the credential without its values.
func (c Credential) String() string {
	return "credential " + c.Name + " v" + strconv.Itoa(c.Version) +
		" fields [" + strings.Join(c.FieldNames(), " ") + "] values " + redacted
}

// GoString keeps %#v from printing values.
func (c Credential) GoString() string { return c.String() }

// Format makes every fmt verb print String.
func (c Credential) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// LogValue keeps values out of slog output.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.Int("version", c.Version),
		slog.Any("fields", c.FieldNames()), slog.String("values", redacted))
}

// MarshalJSON writes the credential with its values redacted. To send
// values on, marshal Fields yourself.
func (c Credential) MarshalJSON() ([]byte, error) {
	fields := make(map[string]string, len(c.Fields))
	for k := range c.Fields {
		fields[k] = redacted
	}
	return json.Marshal(struct {
		Name      string            `json:"name"`
		Version   int               `json:"version"`
		Fields    map[string]string `json:"fields"`
		FetchedAt time.Time         `json:"fetched_at"`
		ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	}{c.Name, c.Version, fields, c.FetchedAt, c.ExpiresAt})
}

// wireCredential is the agent's answer.
type wireCredential struct {
	Name      string            `json:"name"`
	Version   int               `json:"version"`
	Fields    map[string]string `json:"fields"`
	FetchedAt time.Time         `json:"fetched_at"`
	ExpiresAt *time.Time        `json:"expires_at"`
}

// Info is one entry of List: a set's name and version, no values.
type Info struct {
	Name      string     `json:"name"`
	Version   int        `json:"version"` // 0 when not fetched yet
	FetchedAt *time.Time `json:"fetched_at,omitempty"`
}

// Health is the agent's /v1/health answer.
type Health struct {
	Ready       bool                        `json:"ready"`
	Credentials map[string]CredentialHealth `json:"credentials"`
}

// CredentialHealth is one set's health.
type CredentialHealth struct {
	Version    int      `json:"version"`               // 0 when not fetched yet
	Optional   bool     `json:"optional,omitempty"`    // readiness does not wait for it
	AgeSeconds *float64 `json:"age_seconds,omitempty"` // since the last successful check against Vault; nil before one
	LastError  string   `json:"last_error,omitempty"`  // the last failure since then
}
