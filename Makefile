# threadchat: `make run` to chat, `make test` to check everything.
# Each target installs what it needs; nothing has to be set up by hand.

CARGO ?= cargo
# Extra server flags for `make run`, e.g. make run ARGS="--port 9000 --host 0.0.0.0"
ARGS ?=

.PHONY: run build test test-rust test-browser fmt lint clean bench

run:
	$(CARGO) run --release --bin threadchat -- $(ARGS)

# Both packages of the workspace: the server and the stress tool (stress/).
build:
	$(CARGO) build --release --workspace

# Rust tests first (unit, property and integration tests over real sockets,
# and the stress tool's unit tests), then style and lints, then the page in a
# real headless browser.
test: test-rust lint test-browser

# tests/metrics.rs parses /metrics with Python's prometheus_client, which
# this installs into target/prometheus-venv when missing; tests/cluster.rs
# starts its own redis-server, Debian's package, installed when missing.
test-rust:
	bash tests/prometheus/setup.sh >/dev/null
	bash tests/redis/setup.sh
	$(CARGO) test --workspace --all-targets

test-browser:
	$(CARGO) build --bin threadchat
	bash client/tests/setup.sh
	cd client && THREADCHAT_BIN=$(CURDIR)/target/debug/threadchat npm test

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf client/node_modules client/tests/output

# Release build of both packages, server pinned to one core and the stress
# tool (stress/, target/release/chat-stress) to the other; writes
# docs/bench.md and its plot. Takes several minutes.
bench:
	bash bench/run.sh
