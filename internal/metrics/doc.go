// Package metrics owns the agent's Prometheus metrics: every name in
// INTERFACE.md, registered on a registry the agent creates (never the global
// default), plus the Go and process collectors. Values are counts, versions
// and times; never a secret value.
package metrics
