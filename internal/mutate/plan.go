package mutate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/injectorconfig"
)

// ErrDenied is wrapped by every reason to refuse a pod that its author can
// fix; its message is what the user sees. Annotation errors match
// annotation.ErrInvalid instead.
var ErrDenied = errors.New("credlet-injector denied the pod")

// denial is a refusal whose message is only the reason: the apiserver
// already prefixes it with the webhook's name.
type denial struct{ msg string }

func (d *denial) Error() string        { return d.msg }
func (d *denial) Is(target error) bool { return target == ErrDenied }

func deny(format string, args ...any) error {
	return &denial{msg: fmt.Sprintf(format, args...)}
}

// Plan is everything the mutation needs, resolved and checked.
type Plan struct {
	Spec      annotation.Spec
	Policy    injectorconfig.Policy
	VaultAddr string
	AuthMount string
	Sidecar   annotation.Sidecar
	CPU       resource.Quantity
	Memory    resource.Quantity
	UID       int64
	GID       *int64
	Targets   []Target
}

// Target is an app container that gets the mounts and env.
type Target struct {
	Name string
	Init bool // in spec.initContainers
}

// NewPlan resolves the pod's annotations against cfg for namespace. Every
// error wraps ErrDenied or annotation.ErrInvalid.
func NewPlan(pod *corev1.Pod, namespace string, cfg *injectorconfig.Config) (*Plan, error) {
	spec, err := annotation.Parse(pod.Annotations)
	if err != nil {
		return nil, err
	}
	policy, ok := cfg.Policy(namespace)
	if !ok {
		return nil, deny("namespace %q may not use credlet: it is not in the injector's --config (ask the platform team to add it with its allowed KV path prefixes)", namespace)
	}
	p := &Plan{Spec: spec, Policy: policy, VaultAddr: spec.VaultAddr, AuthMount: spec.AuthMount, Sidecar: spec.Sidecar, CPU: policy.CPU, Memory: policy.Memory}
	for _, c := range spec.Credentials {
		if !policy.Allows(c.Mount, c.Path) {
			return nil, deny("annotation %s%s: KV path %q is outside what namespace %q may read (allowed prefixes: %s)",
				annotation.CredentialPrefix, c.Name, c.KVPath(), namespace, strings.Join(policy.AllowedPaths, ", "))
		}
	}
	if len(spec.Credentials) > MaxCredentials {
		return nil, deny("%d %s<name> annotations: a pod may name at most %d credential sets", len(spec.Credentials), annotation.CredentialPrefix, MaxCredentials)
	}
	if spec.VaultAddr != "" && !policy.AllowsVaultAddr(spec.VaultAddr) {
		approved := "none: set allowedVaultAddrs"
		if a := policy.ApprovedVaultAddrs(); len(a) > 0 {
			approved = strings.Join(a, ", ")
		}
		return nil, deny("annotation %svault-addr=%q: not a Vault server namespace %q may use (approved: %s); the agent sends the pod's service-account token there, so ask the platform team to add it to allowedVaultAddrs in the injector config",
			annotation.Prefix, spec.VaultAddr, namespace, approved)
	}
	if p.VaultAddr == "" {
		p.VaultAddr = policy.VaultAddr
	}
	if p.VaultAddr == "" {
		return nil, deny("no Vault address: set annotation %svault-addr or the injector's --vault-addr / config vaultAddr", annotation.Prefix)
	}
	if p.AuthMount == "" {
		p.AuthMount = policy.AuthMount
	}
	if p.Sidecar == "" {
		p.Sidecar = policy.Sidecar
	}
	if spec.AgentCPU != nil {
		p.CPU = *spec.AgentCPU
	}
	if spec.AgentMemory != nil {
		p.Memory = *spec.AgentMemory
	}
	if err := checkConflicts(pod, spec); err != nil {
		return nil, err
	}
	if p.Targets, err = targets(pod, spec.Containers); err != nil {
		return nil, err
	}
	if p.UID, p.GID, err = identity(pod, p.Targets, spec.UID, spec.GID); err != nil {
		return nil, err
	}
	if strings.HasPrefix(spec.Notify, "signal:") && (pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace) {
		return nil, deny("annotation %snotify=%q signals a process in another container: set spec.shareProcessNamespace: true", annotation.Prefix, spec.Notify)
	}
	return p, nil
}

// checkConflicts refuses pods that already hold what the injector adds, or
// where the agent cannot work.
func checkConflicts(pod *corev1.Pod, spec annotation.Spec) error {
	if pod.Spec.OS != nil && pod.Spec.OS.Name != corev1.Linux {
		return deny("spec.os.name is %q: the agent runs on Linux only", pod.Spec.OS.Name)
	}
	if pod.Spec.HostNetwork {
		return deny("spec.hostNetwork is true: the agent's port %d would be the node's, shared by every such pod; run the pod without hostNetwork", AgentPort)
	}
	for _, c := range allContainers(pod) {
		if c.Name == AgentName || c.Name == AgentInitName {
			return deny("the pod already has a container named %q (remove it; the injector adds the agent)", c.Name)
		}
		for _, port := range c.Ports {
			if port.ContainerPort == AgentPort {
				return deny("container %q declares port %d, which the agent listens on", c.Name, AgentPort)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if slices.Contains(volumeNames, v.Name) {
			return deny("the pod already has a volume named %q, which the injector adds", v.Name)
		}
	}
	return nil
}

func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// targets picks the containers named by credlet.io/containers (regular or
// init), or every regular container.
func targets(pod *corev1.Pod, names []string) ([]Target, error) {
	if len(names) == 0 {
		out := make([]Target, len(pod.Spec.Containers))
		for i, c := range pod.Spec.Containers {
			out[i] = Target{Name: c.Name}
		}
		return out, nil
	}
	var out []Target
	for _, n := range names {
		switch {
		case slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == n }):
			out = append(out, Target{Name: n})
		case slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == n }):
			out = append(out, Target{Name: n, Init: true})
		default:
			var have []string
			for _, c := range allContainers(pod) {
				have = append(have, c.Name)
			}
			return nil, deny("annotation %scontainers names %q, which is not a container of this pod (containers: %s)", annotation.Prefix, n, strings.Join(have, ", "))
		}
	}
	return out, nil
}

func (p *Plan) container(pod *corev1.Pod, t Target) *corev1.Container {
	list := pod.Spec.Containers
	if t.Init {
		list = pod.Spec.InitContainers
	}
	for i := range list {
		if list[i].Name == t.Name {
			return &list[i]
		}
	}
	return nil
}
