package injectorconfig

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/credspec"
)

// Config is the --config file. Build it with Load: a Config made otherwise
// allows no KV path.
type Config struct {
	// Defaults apply to every namespace; a namespace's own settings win.
	Defaults Settings `json:"defaults"`
	// Namespaces maps a namespace name, or a glob "prefix-*", to what its
	// pods may do. An exact name wins over globs; the longest glob wins.
	Namespaces map[string]Namespace `json:"namespaces"`

	prefixes map[string][][]string // by Namespaces key, from normalize
}

// Namespace is one namespace's (or glob's) entry.
type Namespace struct {
	// AllowedPaths are KV path prefixes, MOUNT or MOUNT/PATH (a MOUNT/data/
	// form is accepted), compared segment by segment.
	AllowedPaths []string `json:"allowedPaths"`
	Settings     `json:",inline"`
}

// Settings are the defaults an agent gets; every field is optional.
type Settings struct {
	VaultAddr string `json:"vaultAddr,omitempty"`
	// AllowedVaultAddrs are the other Vault addresses a pod's
	// credlet.io/vault-addr may name (its own vaultAddr always may). The
	// agent sends the pod's service-account token to that address, so an
	// address nobody approved is refused.
	AllowedVaultAddrs []string           `json:"allowedVaultAddrs,omitempty"`
	VaultCA           *CARef             `json:"vaultCA,omitempty"`
	AgentImage        string             `json:"agentImage,omitempty"`
	AuthMount         string             `json:"authMount,omitempty"`
	Sidecar           annotation.Sidecar `json:"sidecar,omitempty"`
	Resources         *Resources         `json:"resources,omitempty"`
	SecretsSizeLimit  *resource.Quantity `json:"secretsSizeLimit,omitempty"`
	AllowIPCLock      *bool              `json:"allowIPCLock,omitempty"`
}

// CARef names a ConfigMap or a Secret in the pod's namespace that holds the
// PEM bundle to trust for Vault; it is mounted into the agent only.
type CARef struct {
	ConfigMap string `json:"configMap,omitempty"`
	Secret    string `json:"secret,omitempty"`
	Key       string `json:"key,omitempty"` // default "ca.crt"
}

// Resources are the agent's requests; the memory limit is twice the request
// and no CPU limit is set.
type Resources struct {
	CPU    *resource.Quantity `json:"cpu,omitempty"`
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// Built-in defaults, used where neither the file nor the flags say.
var (
	DefaultCPU              = resource.MustParse("10m")
	DefaultMemory           = resource.MustParse("32Mi")
	DefaultSecretsSizeLimit = resource.MustParse("4Mi")
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid injector config")

// Load reads and validates the file at path. flags holds the settings given
// on the command line (--vault-addr, --agent-image); they fill the file's
// defaults, and giving the same setting in both with different values is an
// error. An empty path means no file: only flags, and no namespace allowed.
func Load(path string, flags Settings) (*Config, error) {
	var c Config
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read injector config: %w", err)
		}
		if err := yaml.UnmarshalStrict(data, &c); err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrInvalid, path, err)
		}
	}
	if err := mergeFlags(&c.Defaults, flags); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	c.normalize()
	return &c, nil
}

func mergeFlags(d *Settings, flags Settings) error {
	for _, f := range []struct {
		name        string
		file, value *string
	}{
		{"--vault-addr / defaults.vaultAddr", &d.VaultAddr, &flags.VaultAddr},
		{"--agent-image / defaults.agentImage", &d.AgentImage, &flags.AgentImage},
	} {
		switch {
		case *f.value == "":
		case *f.file == "":
			*f.file = *f.value
		case *f.file != *f.value:
			return fmt.Errorf("%w: %s given twice with different values (%q, %q)", ErrInvalid, f.name, *f.value, *f.file)
		}
	}
	return nil
}

// Validate checks every entry; the injector refuses to start on an error.
func (c *Config) Validate() error {
	var errs []error
	if c.Defaults.AgentImage == "" {
		errs = append(errs, fmt.Errorf("%w: no agent image: set --agent-image or defaults.agentImage", ErrInvalid))
	}
	if err := c.Defaults.validate(); err != nil {
		errs = append(errs, fmt.Errorf("defaults: %w", err))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Namespaces)) {
		ns := c.Namespaces[name]
		if err := validNamespaceKey(name); err != nil {
			errs = append(errs, err)
		}
		if len(ns.AllowedPaths) == 0 {
			errs = append(errs, fmt.Errorf("%w: namespaces.%s.allowedPaths: at least one prefix", ErrInvalid, name))
		}
		for i, p := range ns.AllowedPaths {
			if _, err := normalizePrefix(p); err != nil {
				errs = append(errs, fmt.Errorf("namespaces.%s.allowedPaths[%d]: %w", name, i, err))
			}
		}
		if err := ns.Settings.validate(); err != nil {
			errs = append(errs, fmt.Errorf("namespaces.%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

var mountRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$`)

func (s *Settings) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...)))
	}
	if s.VaultAddr != "" {
		if err := credspec.CheckVaultAddr(s.VaultAddr); err != nil {
			bad("vaultAddr", "%s (want http(s)://HOST[:PORT])", credspec.ProblemOf(err))
		}
	}
	for i, a := range s.AllowedVaultAddrs {
		if u, err := url.Parse(a); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			bad(fmt.Sprintf("allowedVaultAddrs[%d]", i), "%q: want an http or https URL without user info", a)
		}
	}
	if ca := s.VaultCA; ca != nil {
		if (ca.ConfigMap == "") == (ca.Secret == "") {
			bad("vaultCA", "set exactly one of configMap and secret")
		}
		for _, n := range []string{ca.ConfigMap, ca.Secret} {
			if n != "" && len(validation.IsDNS1123Subdomain(n)) > 0 {
				bad("vaultCA", "%q is not a valid object name", n)
			}
		}
		if ca.Key != "" && len(validation.IsConfigMapKey(ca.Key)) > 0 {
			bad("vaultCA.key", "%q is not a valid key", ca.Key)
		}
	}
	if s.AgentImage != "" && strings.ContainsAny(s.AgentImage, " \t\n") {
		bad("agentImage", "%q contains whitespace", s.AgentImage)
	}
	if s.AuthMount != "" && (len(s.AuthMount) > 128 || !mountRE.MatchString(s.AuthMount)) {
		bad("authMount", "%q: want segments of letters, digits, '.', '_', '-' joined by '/'", s.AuthMount)
	}
	switch s.Sidecar {
	case "", annotation.SidecarNative, annotation.SidecarClassic:
	default:
		bad("sidecar", "%q: allowed native, classic", s.Sidecar)
	}
	if r := s.Resources; r != nil {
		if r.CPU != nil && r.CPU.Sign() <= 0 {
			bad("resources.cpu", "must be positive")
		}
		if r.Memory != nil && r.Memory.Cmp(resource.MustParse("16Mi")) < 0 {
			bad("resources.memory", "at least 16Mi")
		}
	}
	if q := s.SecretsSizeLimit; q != nil && (q.Sign() <= 0 || q.Cmp(resource.MustParse("1Gi")) > 0) {
		bad("secretsSizeLimit", "between 1 byte and 1Gi")
	}
	return errors.Join(errs...)
}

func validNamespaceKey(name string) error {
	n := strings.TrimSuffix(name, "*")
	if n == "" && name == "*" {
		return nil // every namespace
	}
	if strings.HasSuffix(name, "*") {
		n = strings.TrimSuffix(n, "-") + "x" // "team-*" must be a label prefix
	}
	if len(validation.IsDNS1123Label(n)) > 0 {
		return fmt.Errorf("%w: namespaces.%s: want a namespace name or a glob ending in '*'", ErrInvalid, name)
	}
	return nil
}

// normalizePrefix turns "secret/data/partners/acme/" into the segments
// ["secret", "partners", "acme"], the form credspec gives a KV path.
func normalizePrefix(p string) ([]string, error) {
	segs := strings.Split(strings.TrimSuffix(p, "/"), "/")
	for _, s := range segs {
		if !segmentRE.MatchString(s) {
			return nil, fmt.Errorf("%w: KV path prefix %q: want MOUNT or MOUNT/PATH with segments of letters, digits, '.', '_', '-'", ErrInvalid, p)
		}
	}
	if len(segs) >= 2 && segs[1] == "data" {
		if len(segs) == 2 {
			return nil, fmt.Errorf("%w: KV path prefix %q is ambiguous: write %q for the whole mount", ErrInvalid, p, segs[0])
		}
		segs = append(segs[:1], segs[2:]...)
	}
	return segs, nil
}

var segmentRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
