# make demo / make demo-vault (included from the Makefile). Both build the
# agent with the same flags as `make build`; the demo program builds the
# example trading bot and runs everything in a temp dir it removes.

.PHONY: demo
demo: ## the tour: agent on the embedded file source; a bot and a legacy app follow a rotation (needs only Go)
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/credlet-agent ./agent
	$(GO) run ./examples/demo --agent bin/credlet-agent

.PHONY: demo-vault
demo-vault: $(TOOLS_DIR)/vault ## the same against a real Vault dev server, Transit-encrypted fields
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/credlet-agent ./agent
	$(GO) run ./examples/demo --agent bin/credlet-agent --vault $(TOOLS_DIR)/vault
