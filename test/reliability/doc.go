// Package reliability is credlet's reliability suite: the agent and the
// injector run as real processes (built from this module in TestMain)
// against a real Vault dev server, and are pushed where they break:
//
//   - rotation storm: many KV v2 versions while socket and file readers read
//     continuously; no torn read, no error, versions never go backwards;
//   - Vault outage (SIGSTOP, and a cut loopback proxy): reads keep working,
//     /readyz stays ready, the age metric grows, recovery within refresh+1s;
//   - Vault overload: a real rate-limit quota below the fleet's poll rate,
//     and a Vault slower than the request timeout: last good version served,
//     the fleet's rate (from Vault's audit device) at or below the quota,
//     catch-up within two refresh intervals;
//   - token expiry during an outage: a fresh login afterwards, no gap;
//   - agent restart (SIGTERM and SIGKILL): files replaced cleanly, socket
//     reclaimed, readers reconnect;
//   - readiness means delivered: at the first 200 from /readyz every set is
//     on the socket and written as files;
//   - webhook under load with its certificate replaced mid-run;
//   - bad input: hostile annotations (and a readable denial for 500 of them),
//     malformed AdmissionReviews, oversized headers, slowloris connections,
//     unknown methods.
//
// Sizes: `make test` runs the CI size (the default, about a minute);
// `make reliability` sets CREDLET_RELIABILITY=full (1,000 rotations, 60 s
// outages, 20,000 admissions). Tests need the Vault binary from `make
// tools`: under CI a missing one fails them, otherwise they skip; -short
// skips them.
package reliability
