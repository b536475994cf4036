package annotation

// Field is one row of the schema: a key, its default, what it allows, what it
// means, and the parser that stores its value in the Spec.
type Field struct {
	// Key is the full annotation key; "<name>" stands for a credential
	// set's name in per-credential keys.
	Key string
	// Default is parsed when the key is absent; "" leaves the Spec field
	// unset.
	Default string
	// DefaultDoc is shown in the docs instead of Default when the default
	// comes from elsewhere (the injector's config, the agent).
	DefaultDoc string
	// Allowed names the values accepted; denials quote it.
	Allowed string
	// Doc says what the key does.
	Doc string

	parse func(p *state, name, value string) error
}

// schema is the one table. Order is the README's order.
var schema = []Field{
	{
		Key: Prefix + "credential.<name>", DefaultDoc: "none; at least one",
		Allowed: "a KV v2 path MOUNT/PATH (or MOUNT/data/PATH) under the namespace's allowed prefixes; `<name>` is 1-63 of a-z 0-9 - _",
		Doc:     "A credential set delivered as `<name>`: the socket's `/v1/credentials/<name>` and the directory `/credlet/secrets/<name>/`.",
		parse:   parseCredPath,
	},
	{
		Key: Prefix + "credential.<name>.transit-key", DefaultDoc: "none (fields are plain)",
		Allowed: "a Transit key name: letters, digits, '.', '_', '-' (1-128)",
		Doc:     "Transit key that decrypts fields holding `vault:v…` ciphertext.",
		parse:   credOption("transit"),
	},
	{
		Key: Prefix + "credential.<name>.context", DefaultDoc: "none",
		Allowed: "1-256 bytes on one line without ';' (needs .transit-key)",
		Doc:     "Derivation context for a derived Transit key (plain text; the agent base64-encodes it).",
		parse:   credOption("context"),
	},
	{
		Key: Prefix + "credential.<name>.fields", DefaultDoc: "all fields",
		Allowed: "comma list of field names: letters, digits, '.', '_', '-'",
		Doc:     "Fields to deliver; each must be present and non-empty.",
		parse:   credOption("fields"),
	},
	{
		Key: Prefix + "credential.<name>.format", Default: "files",
		Allowed: "`files`, `json`, `env`",
		Doc:     "File layout under `/credlet/secrets/<name>/`: one file per field, `credentials.json`, or `credentials.env`.",
		parse:   credOption("format"),
	},
	{
		Key: Prefix + "credential.<name>.optional", Default: "false",
		Allowed: "`true`, `false`",
		Doc:     "When true the pod starts without waiting for this set.",
		parse:   parseCredOptional,
	},
	{
		Key: Prefix + "auth", Default: string(AuthKubernetes),
		Allowed: "`kubernetes`, `jwt`, `approle`",
		Doc:     "How the agent logs in to Vault: the pod's ServiceAccount token (audience `vault`) through Kubernetes auth (Vault asks the apiserver's TokenReview) or jwt auth (Vault checks the signature itself), or an AppRole.",
		parse:   parseAuth,
	},
	{
		Key: Prefix + "role", DefaultDoc: "none; required for `kubernetes` and `jwt` auth",
		Allowed: "a Vault role name: letters, digits, '.', '_', '-', '@' (1-128)",
		Doc:     "Vault Kubernetes or jwt auth role.",
		parse:   parseRole,
	},
	{
		Key: Prefix + "auth-mount", DefaultDoc: "injector config, else `kubernetes` / `jwt` / `approle`",
		Allowed: "a Vault path: segments of letters, digits, '.', '_', '-' joined by '/' (1-128)",
		Doc:     "Where the auth method is mounted in Vault.",
		parse:   parseAuthMount,
	},
	{
		Key: Prefix + "approle-secret", DefaultDoc: "none; required for `approle` auth",
		Allowed: "a Secret name in the pod's namespace (DNS-1123 subdomain)",
		Doc:     "Secret with keys `role_id` and `secret_id`, mounted into the agent only.",
		parse:   parseAppRoleSecret,
	},
	{
		Key: Prefix + "vault-addr", DefaultDoc: "injector config (`--vault-addr`)",
		Allowed: "an http or https URL without user info, query or fragment",
		Doc:     "Vault address for this pod; only the namespace's own `vaultAddr` or one in the config's `allowedVaultAddrs` (the agent sends the pod's service-account token there).",
		parse:   parseVaultAddr,
	},
	{
		Key: Prefix + "delivery", Default: "socket,files",
		Allowed: "`socket,files`, `socket`, `files`",
		Doc:     "How the app reads credentials: the Unix socket `/credlet/run/agent.sock`, files under `/credlet/secrets`, or both.",
		parse:   parseDelivery,
	},
	{
		Key: Prefix + "containers", DefaultDoc: "every app container",
		Allowed: "comma list of the pod's container names",
		Doc:     "Containers that get the mounts and the `CREDLET_SOCKET` / `CREDLET_SECRETS_DIR` env.",
		parse:   parseContainers,
	},
	{
		Key: Prefix + "uid", DefaultDoc: "the containers' `runAsUser`",
		Allowed: "an integer from 1 to 2147483647",
		Doc:     "The app's user when its containers don't set `runAsUser`; the agent runs as it and only it may read.",
		parse:   parseUID,
	},
	{
		Key: Prefix + "gid", DefaultDoc: "the containers' `runAsGroup`",
		Allowed: "an integer from 0 to 2147483647",
		Doc:     "The app's group when its containers don't set `runAsGroup`; the agent runs as it.",
		parse:   parseGID,
	},
	{
		Key: Prefix + "refresh", DefaultDoc: "`10s` (agent)",
		Allowed: "a duration from 1s to 24h, e.g. `30s`, `5m`",
		Doc:     "How often the agent checks Vault for a new version (jittered ±10%).",
		parse:   parseRefresh,
	},
	{
		Key: Prefix + "verify-url", DefaultDoc: "none",
		Allowed: "`http://127.0.0.1:PORT/PATH` (any loopback address), `http://localhost:PORT/PATH`, or `unix:/path/to.sock`",
		Doc:     "Blue/green check: the agent POSTs a candidate version here and publishes it only on a 2xx.",
		parse:   parseVerifyURL,
	},
	{
		Key: Prefix + "notify", DefaultDoc: "none",
		Allowed: "`signal:SIGNAL:PROCESS` (HUP, INT, QUIT, USR1, USR2, TERM, WINCH; PROCESS is the target's /proc comm; needs `shareProcessNamespace: true`) or `http:URL`",
		Doc:     "What the agent does after publishing a new version.",
		parse:   parseNotify,
	},
	{
		Key: Prefix + "sidecar", DefaultDoc: "injector config, else `native`",
		Allowed: "`native`, `classic`",
		Doc:     "`native`: init container with `restartPolicy: Always` and a startup probe; `classic`: a sidecar container, plus an `--once` init container that fills the files first when files are delivered (with the socket alone the app's client waits on `not_ready`).",
		parse:   parseSidecar,
	},
	{
		Key: Prefix + "agent-cpu", DefaultDoc: "injector config, else `10m`",
		Allowed: "a CPU quantity from 1m to 4",
		Doc:     "Agent CPU request (no CPU limit is set).",
		parse:   parseAgentCPU,
	},
	{
		Key: Prefix + "agent-memory", DefaultDoc: "injector config, else `32Mi`",
		Allowed: "a memory quantity from 16Mi to 1Gi",
		Doc:     "Agent memory request; the limit is twice the request.",
		parse:   parseAgentMemory,
	},
	{
		Key: Prefix + "log-level", DefaultDoc: "`info` (agent)",
		Allowed: "`debug`, `info`, `warn`, `error`",
		Doc:     "Agent log level.",
		parse:   parseLogLevel,
	},
	{
		Key: KeyStatus, DefaultDoc: "written by the injector",
		Allowed: "`injected`",
		Doc:     "Marks a mutated pod so it is never injected twice. Don't set it yourself.",
		parse:   parseStatus,
	},
}

// Keys returns every key the schema knows, "<name>" standing for a
// credential set's name.
func Keys() []string {
	keys := make([]string, len(schema))
	for i, f := range schema {
		keys[i] = f.Key
	}
	return keys
}

var byKey = func() map[string]*Field {
	m := make(map[string]*Field, len(schema))
	for i := range schema {
		m[schema[i].Key] = &schema[i]
	}
	return m
}()
