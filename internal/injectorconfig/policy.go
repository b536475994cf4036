package injectorconfig

import (
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/credlet/credlet/internal/annotation"
)

// Policy is what the config says for one namespace, defaults resolved.
type Policy struct {
	Namespace    string // the namespace asked for
	Entry        string // the config key that matched, e.g. "partner-*"
	AllowedPaths []string
	VaultAddr    string
	// AllowedVaultAddrs are the addresses credlet.io/vault-addr may name
	// besides VaultAddr (see AllowsVaultAddr).
	AllowedVaultAddrs []string
	VaultCA           *CARef
	AgentImage        string
	AuthMount         string
	Sidecar           annotation.Sidecar
	CPU, Memory       resource.Quantity
	SecretsSizeLimit  resource.Quantity
	AllowIPCLock      bool

	prefixes [][]string
}

// Policy resolves the entry for namespace; ok is false when no entry
// matches, and the namespace may then inject nothing.
func (c *Config) Policy(namespace string) (p Policy, ok bool) {
	key, ok := c.match(namespace)
	if !ok {
		return Policy{}, false
	}
	ns := c.Namespaces[key]
	p = Policy{
		Namespace: namespace, Entry: key,
		AllowedPaths:     slices.Clone(ns.AllowedPaths),
		Sidecar:          annotation.SidecarNative,
		CPU:              DefaultCPU,
		Memory:           DefaultMemory,
		SecretsSizeLimit: DefaultSecretsSizeLimit,
	}
	for _, s := range []Settings{c.Defaults, ns.Settings} { // later wins
		p.apply(s)
	}
	p.prefixes = c.prefixes[key]
	return p, true
}

func (p *Policy) apply(s Settings) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&p.VaultAddr, s.VaultAddr)
	if len(s.AllowedVaultAddrs) > 0 {
		p.AllowedVaultAddrs = slices.Clone(s.AllowedVaultAddrs)
	}
	set(&p.AgentImage, s.AgentImage)
	set(&p.AuthMount, s.AuthMount)
	if s.Sidecar != "" {
		p.Sidecar = s.Sidecar
	}
	if s.VaultCA != nil {
		ca := *s.VaultCA
		if ca.Key == "" {
			ca.Key = "ca.crt"
		}
		p.VaultCA = &ca
	}
	if r := s.Resources; r != nil {
		if r.CPU != nil {
			p.CPU = r.CPU.DeepCopy()
		}
		if r.Memory != nil {
			p.Memory = r.Memory.DeepCopy()
		}
	}
	if s.SecretsSizeLimit != nil {
		p.SecretsSizeLimit = s.SecretsSizeLimit.DeepCopy()
	}
	if s.AllowIPCLock != nil {
		p.AllowIPCLock = *s.AllowIPCLock
	}
}

// normalize caches every entry's prefixes as segments (Load calls it).
func (c *Config) normalize() {
	c.prefixes = make(map[string][][]string, len(c.Namespaces))
	for key, ns := range c.Namespaces {
		for _, a := range ns.AllowedPaths {
			segs, _ := normalizePrefix(a) // validated
			c.prefixes[key] = append(c.prefixes[key], segs)
		}
	}
}

func (c *Config) match(namespace string) (string, bool) {
	if _, ok := c.Namespaces[namespace]; ok {
		return namespace, true
	}
	best := ""
	found := false
	for key := range c.Namespaces {
		prefix, glob := strings.CutSuffix(key, "*")
		if glob && strings.HasPrefix(namespace, prefix) && (!found || len(key) > len(best) || (len(key) == len(best) && key < best)) {
			best, found = key, true
		}
	}
	return best, found
}

// Allows reports whether a KV path, as credspec gives it (mount and path
// inside the mount), lies under one of the namespace's prefixes, compared
// segment by segment ("secret/acme" does not allow "secret/acme-evil").
func (p Policy) Allows(mount, path string) bool {
	segs := append([]string{mount}, strings.Split(path, "/")...)
	for _, pre := range p.prefixes {
		if len(pre) <= len(segs) && slices.Equal(pre, segs[:len(pre)]) {
			return true
		}
	}
	return false
}

// AllowsVaultAddr reports whether a pod may send its agent to addr: the
// namespace's own Vault address, or one in AllowedVaultAddrs. Scheme and
// host compare without case, and a trailing slash is ignored.
func (p *Policy) AllowsVaultAddr(addr string) bool {
	want := normalizeVaultAddr(addr)
	if want == "" {
		return false
	}
	if p.VaultAddr != "" && normalizeVaultAddr(p.VaultAddr) == want {
		return true
	}
	for _, a := range p.AllowedVaultAddrs {
		if normalizeVaultAddr(a) == want {
			return true
		}
	}
	return false
}

// ApprovedVaultAddrs lists what AllowsVaultAddr accepts, for messages.
func (p *Policy) ApprovedVaultAddrs() []string {
	var out []string
	if p.VaultAddr != "" {
		out = append(out, p.VaultAddr)
	}
	return append(out, p.AllowedVaultAddrs...)
}

func normalizeVaultAddr(a string) string {
	u, err := url.Parse(a)
	if err != nil || u.Host == "" || u.User != nil {
		return ""
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/") + "?" + u.RawQuery
}
