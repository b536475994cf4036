// Command bench measures credlet side by side with the tools a user would
// otherwise pick, in one run on one machine, and writes the results:
//
//   - credlet-agent vs Vault Agent (`vault agent`: auto-auth AppRole,
//     template rendering, API proxy with the auto-auth token) vs a direct
//     Vault KV v2 read, all against the same Vault dev server;
//   - credlet-injector vs the Vault Agent Injector (vault-k8s agent-inject)
//     on the same AdmissionReview;
//   - the fleet phase (-only fleet; last in the full run), on a Vault and a
//     kube-apiserver of its own configured by manifests/vault/setup.sh:
//     login storms of real agents with Kubernetes and jwt auth (storm.go),
//     the fleet under a rate-limit quota (overload.go), and the fleet model
//     with its projection to 100 / 1,000 / 10,000 pods (model.go), each a
//     table of its own in the results.
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
