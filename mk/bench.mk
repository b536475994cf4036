# Benchmarks, reliability suite and fuzzing (issue 8). Included by the
# Makefile, which defines GO, TOOLS_DIR, LDFLAGS and the `build` and `tools`
# targets.

# The Vault Agent Injector anchor, built from its Go module (tools/bench, its
# own module so vault-k8s's dependencies never touch credlet's go.mod) into
# the tools cache outside the clone. The file name carries a hash of that
# module's go.mod/go.sum, so a version bump builds a new binary and a fresh
# clone on the same machine reuses the old one.
VAULT_K8S_KEY := $(shell cat tools/bench/go.mod tools/bench/go.sum 2>/dev/null | sha256sum | cut -c1-12)
VAULT_K8S     := $(TOOLS_DIR)/vault-k8s-$(VAULT_K8S_KEY)

$(VAULT_K8S):
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building vault-k8s (the Vault Agent Injector anchor) into $(TOOLS_DIR) (first time only, ~2 min)"
	cd tools/bench && $(GO) build -o $@.tmp github.com/hashicorp/vault-k8s && mv $@.tmp $@

.PHONY: bench-tools
bench-tools: $(TOOLS_DIR)/vault $(VAULT_K8S) ## the anchors: vault (Vault Agent) and vault-k8s

# make bench: one run, ≤ 15 minutes once the tools are built (the fleet
# phase, last, starts its own Vault and kube-apiserver and runs
# manifests/vault/setup.sh). Prints the tables; writes bench/results.md and
# bench/latency.png. BENCH_FLAGS passes extra flags (e.g.
# BENCH_FLAGS='-window 20s -reads 20000' for a quick look, or
# BENCH_FLAGS='-only fleet -out /tmp/f.md -png /tmp/f.png' for one phase
# (reads, admission or fleet); the committed results come from the defaults).
BENCH_FLAGS ?=
.PHONY: bench
bench: build bench-tools ## credlet vs Vault Agent / vault-k8s side by side: bench/results.md + bench/latency.png
	@mkdir -p bin
	$(GO) build -o bin/credlet-bench ./bench
	bin/credlet-bench -agent bin/credlet-agent -injector bin/credlet-injector -vault-k8s $(VAULT_K8S) \
		-out bench/results.md -png bench/latency.png $(BENCH_FLAGS)

# make reliability: the reliability suite at full size (1,000 rotations,
# 60 s outages, 20,000 admissions). `make test` runs the same tests at CI
# size (the default when CREDLET_RELIABILITY is unset).
RELIABILITY_TIMEOUT ?= 30m
.PHONY: reliability
reliability: tools ## reliability suite, full size (test/reliability)
	CREDLET_RELIABILITY=full $(GO) test -count=1 -v -timeout $(RELIABILITY_TIMEOUT) ./test/reliability/

# make fuzz: every fuzz target in the module, FUZZTIME each (CI: FUZZTIME=10s).
FUZZTIME ?= 60s
.PHONY: fuzz
fuzz: ## run every Fuzz* target for FUZZTIME (default 60s) each
	@bench/fuzz.sh "$(GO)" "$(FUZZTIME)"

