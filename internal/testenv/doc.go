// Package testenv starts the real servers credlet's tests run against: a
// Vault dev server (StartVault) and an etcd + kube-apiserver pair through
// controller-runtime's envtest (StartKube), plus a loopback TCP proxy whose
// traffic a test can cut (StartProxy), for outage tests.
//
// It owns where the server binaries come from (ToolsDir, Binary: the folder
// `make tools` fills, named by $CREDLET_TOOLS_DIR), the policy when one is
// missing (tests fail under $CI and skip otherwise; -short skips them; see
// Main, NeedServers, RequireBinary), and the servers' whole lifetime: free
// 127.0.0.1 ports, temporary data dirs removed on stop, and processes that
// always stop, on Stop, and also when the test binary dies by panic, timeout
// or SIGKILL (a parent-death signal; on Linux).
//
// Servers are slow to start compared with a test (Vault about a second, the
// apiserver several), so each package starts them once in TestMain through
// Main, and its tests isolate themselves by KV path, transit key, auth
// mount, policy and namespace names.
//
// The package also configures what credlet needs on those servers: transit
// at transit/, approle at approle/, policies, AppRole roles, and Vault's
// Kubernetes auth against the envtest apiserver (a token reviewer bound to
// system:auth-delegator; roles requiring audience "vault").
package testenv
