// Package cluster runs a single-node Kubernetes cluster on this machine for
// credlet's pod tests and `make cluster`: etcd and kube-apiserver (through
// internal/testenv), kube-controller-manager, kube-scheduler, a kubelet,
// containerd with runc, the CNI bridge plugin, and a Vault dev server that
// pods reach over the CNI bridge. Images are made from the project's static
// binaries (package images) and imported into containerd; nothing is pulled.
//
// Everything runs inside PID, network and mount namespaces the run creates
// (Isolate), so nothing outlives the run, no address outside the run's own
// network namespace is used, and runs side by side do not meet.
package cluster
