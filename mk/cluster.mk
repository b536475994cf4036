# make cluster / make cluster-tools (included from the Makefile).
#
# The single-node cluster of internal/cluster: the kubelet,
# kube-controller-manager and kube-scheduler (k8s.io/kubernetes, the version
# of kube-apiserver in tools/) and the CNI plugins bridge, host-local and
# loopback, all built from tools/cluster (its own Go module, so the tools
# cache key does not change) into a cache outside the clone keyed by that
# module, once; containerd, runc and a static busybox (the legacy example
# app's shell) from Debian's packages, installed with apt-get when missing.

CLUSTER_KEY       := $(shell cat tools/cluster/go.mod tools/cluster/go.sum 2>/dev/null | sha256sum | cut -c1-12)
CLUSTER_TOOLS_DIR ?= $(CACHE_HOME)/credlet/cluster-$(CLUSTER_KEY)
export CREDLET_CLUSTER_TOOLS_DIR := $(CLUSTER_TOOLS_DIR)
K8S_LDFLAGS       := -X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34
CLUSTER_PACKAGES  := containerd:containerd runc:runc ctr:containerd containerd-shim-runc-v2:containerd /bin/busybox:busybox-static ip:iproute2

# Each binary is built only when missing, to a temp name then renamed; the
# time of each build is printed.
$(CLUSTER_TOOLS_DIR)/kubelet $(CLUSTER_TOOLS_DIR)/kube-controller-manager $(CLUSTER_TOOLS_DIR)/kube-scheduler:
	@mkdir -p $(CLUSTER_TOOLS_DIR)
	@echo ">> building $(@F) into $(CLUSTER_TOOLS_DIR) (first time only)"
	@s=$$(date +%s); cd tools/cluster && $(GO) build -ldflags '$(K8S_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/cmd/$(@F) && mv $@.tmp $@; \
	echo ">> $(@F) built in $$(( $$(date +%s) - s ))s"

$(CLUSTER_TOOLS_DIR)/cni/bridge $(CLUSTER_TOOLS_DIR)/cni/host-local $(CLUSTER_TOOLS_DIR)/cni/loopback:
	@mkdir -p $(CLUSTER_TOOLS_DIR)/cni
	@s=$$(date +%s); pkg=$$(case $(@F) in host-local) echo ipam/host-local;; *) echo main/$(@F);; esac); \
	cd tools/cluster && CGO_ENABLED=0 $(GO) build -o $@.tmp github.com/containernetworking/plugins/plugins/$$pkg && mv $@.tmp $@; \
	echo ">> CNI $(@F) built in $$(( $$(date +%s) - s ))s"

.PHONY: cluster-packages
cluster-packages: ## containerd, runc, busybox-static, iproute2 from apt-get when missing (needs root)
	@missing=""; for pair in $(CLUSTER_PACKAGES); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
		if ! command -v $$cmd >/dev/null 2>&1 && [ ! -x "$$cmd" ]; then missing="$$missing $$pkg"; fi; done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// /}" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo ">> missing Debian packages:$$missing; run as root, or: sudo apt-get install -y $$missing"; exit 1; fi; \
		echo ">> apt-get install -y $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: cluster-tools
cluster-tools: cluster-packages $(CLUSTER_TOOLS_DIR)/kubelet $(CLUSTER_TOOLS_DIR)/kube-controller-manager $(CLUSTER_TOOLS_DIR)/kube-scheduler \
	$(CLUSTER_TOOLS_DIR)/cni/bridge $(CLUSTER_TOOLS_DIR)/cni/host-local $(CLUSTER_TOOLS_DIR)/cni/loopback ## the cluster's binaries
	@echo ">> cluster binaries ready in $(CLUSTER_TOOLS_DIR)"

.PHONY: cluster
cluster: tools cluster-tools ## a single-node cluster with credlet's images, in the foreground; Ctrl-C stops it (root)
	@mkdir -p bin
	$(GO) build -o bin/credlet-cluster ./internal/cluster/cmd/cluster
	exec bin/credlet-cluster

.PHONY: kubectl
kubectl: ## bin/kubectl v1.34.4 from the Go module proxy (optional, for make cluster)
	@mkdir -p bin
	cd tools/cluster && $(GO) build -ldflags '$(K8S_LDFLAGS)' -o ../../bin/kubectl k8s.io/kubernetes/cmd/kubectl
