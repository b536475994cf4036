# credlet — build, test and demo. Every target installs what it needs itself.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS     := -s -w -X github.com/credlet/credlet/internal/version.Version=$(VERSION) \
               -X github.com/credlet/credlet/internal/version.Commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# The real test servers live outside the clone, keyed by the pinned versions,
# so a fresh clone on the same machine reuses them (TESTENV.md).
CACHE_HOME  ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)
TOOLS_KEY   := $(shell cat tools/go.mod tools/go.sum tools/promtool/go.mod tools/promtool/go.sum 2>/dev/null | sha256sum | cut -c1-12)
TOOLS_DIR   ?= $(CACHE_HOME)/credlet/tools-$(TOOLS_KEY)
export CREDLET_TOOLS_DIR := $(TOOLS_DIR)
export KUBEBUILDER_ASSETS := $(TOOLS_DIR)

.PHONY: build
build: ## bin/credlet-agent and bin/credlet-injector, static
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/credlet-agent ./agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/credlet-injector ./injector

# Each server is built only when its binary is missing; a version change
# changes TOOLS_KEY and so the folder. Builds go to a temp name and are
# renamed, so an interrupted build never leaves a half binary behind.
$(TOOLS_DIR)/vault:
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building vault into $(TOOLS_DIR) (first time only, ~5 min)"
	cd tools && $(GO) build -o $@.tmp github.com/hashicorp/vault && mv $@.tmp $@

$(TOOLS_DIR)/kube-apiserver:
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building kube-apiserver into $(TOOLS_DIR) (first time only, ~3 min)"
	cd tools && $(GO) build -ldflags '-X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34' \
		-o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver && mv $@.tmp $@

$(TOOLS_DIR)/etcd:
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building etcd into $(TOOLS_DIR)"
	cd tools && $(GO) build -o $@.tmp go.etcd.io/etcd/server/v3 && mv $@.tmp $@

$(TOOLS_DIR)/promtool:
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building promtool into $(TOOLS_DIR) (first time only, ~3 min)"
	cd tools/promtool && $(GO) build -o $@.tmp github.com/prometheus/prometheus/cmd/promtool && mv $@.tmp $@

.PHONY: tools
tools: $(TOOLS_DIR)/vault $(TOOLS_DIR)/kube-apiserver $(TOOLS_DIR)/etcd $(TOOLS_DIR)/promtool ## real test servers
	@echo ">> test servers ready in $(TOOLS_DIR)"

GOTEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: lint
lint: ## go mod tidy -diff + go vet + staticcheck (pinned)
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# make test: builds the real servers if needed, then runs every test with
# -race. The verbose log goes to bin/test.log; the console shows each
# top-level test's result, so the server-backed ones are visibly there.
.PHONY: test

test: tools cluster-tools lint test-sdk
	@mkdir -p bin
	@echo ">> go test $(GOTEST_FLAGS) ./...  (servers from $(TOOLS_DIR))"
	@set +e; $(GO) test $(GOTEST_FLAGS) -v ./... > bin/test.log 2>&1; rc=$$?; set -e; \
	grep -E '^(--- (PASS|FAIL|SKIP)|ok |FAIL|panic:|---.*timed out)' bin/test.log || true; \
	pass=$$(grep -c '^--- PASS' bin/test.log || true); fail=$$(grep -c '^--- FAIL' bin/test.log || true); \
	skip=$$(grep -c '^--- SKIP' bin/test.log || true); \
	if [ $$rc -ne 0 ]; then echo ">> failures (last 80 lines of bin/test.log):"; grep -B2 -A20 -E '^\s*--- FAIL|^panic:' bin/test.log | tail -80; fi; \
	echo "tests: $$pass passed, $$fail failed, $$skip skipped"; exit $$rc

.PHONY: test-short
test-short: ## fast loop: no server-backed tests
	$(GO) test -short -count=1 ./...

.PHONY: clean
clean:
	rm -rf bin

# Demo, bench, reliability and fuzz targets live beside this file.
-include mk/*.mk
