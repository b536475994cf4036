package annotation

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/credlet/credlet/internal/credspec"
)

// Prefix is the annotation (and label) domain credlet owns.
const Prefix = "credlet.io/"

// Keys the injector reads or writes outside the schema's own parsing.
const (
	// InjectLabel is the label (not an annotation) that routes a pod to the
	// webhook through its objectSelector.
	InjectLabel = Prefix + "inject"
	// KeyStatus is written by the injector once a pod is mutated.
	KeyStatus = Prefix + "status"
	// StatusInjected is KeyStatus's only value.
	StatusInjected = "injected"
	// CredentialPrefix starts every per-credential key.
	CredentialPrefix = Prefix + "credential."
)

// Auth is how the agent logs in to Vault.
type Auth string

// The auth methods a pod may choose. ("token" is a dev-only agent mode and is
// not offered to pods.)
const (
	AuthKubernetes Auth = "kubernetes"
	AuthJWT        Auth = "jwt"
	AuthAppRole    Auth = "approle"
)

// Auths are the values credlet.io/auth admits.
var Auths = []Auth{AuthKubernetes, AuthJWT, AuthAppRole}

// Sidecar is how the agent is added to the pod.
type Sidecar string

// The sidecar modes.
const (
	// SidecarNative: an init container with restartPolicy Always and a
	// startup probe; app containers start once credentials are ready.
	SidecarNative Sidecar = "native"
	// SidecarClassic: an init container running the agent with --once, plus
	// a regular sidecar container.
	SidecarClassic Sidecar = "classic"
)

// Sidecars are the values credlet.io/sidecar admits.
var Sidecars = []Sidecar{SidecarNative, SidecarClassic}

// Delivery says how credentials reach the app.
type Delivery struct {
	Socket bool // HTTP over the Unix socket
	Files  bool // files on the tmpfs
}

// Deliveries are the shapes credlet.io/delivery admits.
var Deliveries = []Delivery{{Socket: true, Files: true}, {Socket: true}, {Files: true}}

// String renders the annotation value, "socket,files", "socket" or "files".
func (d Delivery) String() string {
	switch {
	case d.Socket && d.Files:
		return "socket,files"
	case d.Socket:
		return "socket"
	case d.Files:
		return "files"
	}
	return ""
}

// Spec is a pod's credlet.io annotations, validated and typed. Zero values
// mean "not set": package mutate fills them from the injector's config or
// leaves them to the agent's own defaults.
type Spec struct {
	Status        string                // KeyStatus, "" or StatusInjected
	Auth          Auth                  // default AuthKubernetes
	Role          string                // Kubernetes or jwt auth role
	AuthMount     string                // "" : config default, then the agent's
	AppRoleSecret string                // Secret holding role_id and secret_id
	VaultAddr     string                // "" : config default
	Credentials   []credspec.Credential // sorted by name; at least one
	Delivery      Delivery              // default both
	Containers    []string              // nil: every app container
	UID, GID      *int64                // nil: derived from securityContext
	Refresh       time.Duration         // 0: the agent's default
	VerifyURL     string
	Notify        string
	Sidecar       Sidecar            // "" : config default
	AgentCPU      *resource.Quantity // nil: config default
	AgentMemory   *resource.Quantity // nil: config default
	LogLevel      string             // "" : the agent's default
}
