// Command bench measures credlet side by side with the tools a user would
// otherwise pick, in one run on one machine, and writes the results:
//
//   - credlet-agent vs Vault Agent (`vault agent`: auto-auth AppRole,
//     template rendering, API proxy with the auto-auth token) vs a direct
//     Vault KV v2 read, all against the same Vault dev server;
//   - credlet-injector vs the Vault Agent Injector (vault-k8s agent-inject)
//     on the same AdmissionReview.
//
// Every row of the table is measured in the same run (or, where a default
// interval is too long to wait for, computed from distributions measured in
// this run; the row says so). Vault's own view is read from its file audit
// device: requests per minute per agent (each agent logs in with its own
// AppRole role, whose name Vault records in every audited request) and the
// point in a token's life at which each agent renews it.
//
// Usage (make bench runs it with the right paths):
//
//	bench -agent bin/credlet-agent -injector bin/credlet-injector \
//	      -vault-k8s $TOOLS_DIR/vault-k8s -out bench/results.md -png bench/latency.png
//
// The Vault binary comes from the tools folder (internal/testenv). Every
// process started here listens on 127.0.0.1, dies with this process (a
// parent-death signal), and is stopped before it returns.
package main
