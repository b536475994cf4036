// Package pods runs credlet in real pods: a single-node cluster (kubelet,
// containerd, runc, CNI; package internal/cluster) started once for the
// package, the injector deployed from manifests/overlays/test, Vault set up
// by manifests/vault/setup.sh, and the scenarios of the README's "Pod tests"
// section as tests. Each needs root; under CI a missing prerequisite fails
// them.
package pods
