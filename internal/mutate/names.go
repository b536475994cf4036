package mutate

// Names and paths the injected pod uses. Apps read SocketPath and SecretsDir
// through the CREDLET_SOCKET and CREDLET_SECRETS_DIR env.
const (
	AgentName     = "credlet-agent"      // the sidecar (native or classic)
	AgentInitName = "credlet-agent-init" // classic mode's --once init container

	VolumeSecrets = "credlet-secrets"
	VolumeRun     = "credlet-run"
	VolumeToken   = "credlet-token"
	VolumeAppRole = "credlet-approle"
	VolumeVaultCA = "credlet-vault-ca"

	SecretsDir = "/credlet/secrets"
	RunDir     = "/credlet/run"
	SocketPath = RunDir + "/agent.sock"
	TokenDir   = "/var/run/secrets/credlet"
	TokenPath  = TokenDir + "/token"
	AppRoleDir = "/credlet/approle"
	VaultCADir = "/credlet/vault-ca"
	VaultCAPem = VaultCADir + "/ca.crt"

	EnvSocket     = "CREDLET_SOCKET"
	EnvSecretsDir = "CREDLET_SECRETS_DIR"

	AgentPort     = 9102
	AgentPortName = "credlet-metrics"

	TokenAudience          = "vault"
	TokenExpirationSeconds = int64(600)

	// MaxCredentials caps the credential sets one pod may name: each is an
	// agent argument, a Vault poll and a directory, so thousands would make
	// a pod too big to store and an agent that polls Vault flat out.
	MaxCredentials = 64
)

// volumeNames are every volume the injector may add.
var volumeNames = []string{VolumeSecrets, VolumeRun, VolumeToken, VolumeAppRole, VolumeVaultCA}
