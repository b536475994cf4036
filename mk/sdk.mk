# make test-sdk (included from the Makefile; make test runs it): the Python
# and Node SDK suites, each by its language's own runner, against the real
# agent binary on its embedded dev source. Without python3 or node the
# target says what is missing and fails under CI (CI set), else skips that
# suite.

SDK_AGENT := $(CURDIR)/bin/credlet-agent

.PHONY: sdk-agent
sdk-agent:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/credlet-agent ./agent

.PHONY: test-sdk
test-sdk: test-sdk-python test-sdk-node ## Python and Node SDK tests against bin/credlet-agent

.PHONY: test-sdk-python
test-sdk-python: sdk-agent ## sdk/python: python3 -m unittest (Python >= 3.9, stdlib only)
	@if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1; then \
		echo ">> MISSING: python3 >= 3.9 (found: $$(command -v python3 >/dev/null && python3 --version 2>&1 || echo none)); the Python SDK tests need it (Debian: apt-get install python3)"; \
		if [ -n "$${CI:-}" ]; then exit 1; fi; echo ">> skipping the Python SDK tests (CI is not set)"; exit 0; \
	fi; \
	echo ">> python3 -m unittest in sdk/python ($$(python3 --version)) against bin/credlet-agent"; \
	set +e; cd sdk/python && CREDLET_AGENT=$(SDK_AGENT) PYTHONDONTWRITEBYTECODE=1 \
		python3 -m unittest discover -s . -t . -v > $(CURDIR)/bin/test-sdk-python.log 2>&1; rc=$$?; \
	grep -E ' \.\.\. |^Ran |^OK|^FAILED|^(FAIL|ERROR):' $(CURDIR)/bin/test-sdk-python.log || true; \
	if [ $$rc -ne 0 ]; then echo ">> Python SDK tests failed (full log: bin/test-sdk-python.log):"; tail -60 $(CURDIR)/bin/test-sdk-python.log; exit $$rc; fi

.PHONY: test-sdk-node
test-sdk-node: sdk-agent ## sdk/node: node --test (Node >= 18, no dependencies)
	@if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' >/dev/null 2>&1; then \
		echo ">> MISSING: node >= 18 (found: $$(command -v node >/dev/null && node --version 2>&1 || echo none)); the Node SDK tests need it (Debian: apt-get install nodejs)"; \
		if [ -n "$${CI:-}" ]; then exit 1; fi; echo ">> skipping the Node SDK tests (CI is not set)"; exit 0; \
	fi; \
	echo ">> node --test in sdk/node (node $$(node --version)) against bin/credlet-agent"; \
	reporter=$$(node -e 'const [a, b] = process.versions.node.split(".").map(Number); console.log(a > 18 || b >= 15 ? "--test-reporter=spec" : "")'); \
	set +e; cd sdk/node && CREDLET_AGENT=$(SDK_AGENT) node --test $$reporter test/client.test.mjs test/require.test.cjs \
		> $(CURDIR)/bin/test-sdk-node.log 2>&1; rc=$$?; \
	grep -E '^\s*(✔|✖)|^ℹ (tests|pass|fail|skipped) |^\s*(not )?ok [0-9]|^# (tests|pass|fail|skipped) ' $(CURDIR)/bin/test-sdk-node.log || true; \
	if [ $$rc -ne 0 ]; then echo ">> Node SDK tests failed (full log: bin/test-sdk-node.log):"; tail -60 $(CURDIR)/bin/test-sdk-node.log; exit $$rc; fi
