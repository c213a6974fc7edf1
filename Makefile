# threadchat: `make run` to chat, `make test` to check everything.
# Each target installs what it needs; nothing has to be set up by hand.

CARGO ?= cargo
# Where cargo builds (CARGO_TARGET_DIR when set, as cargo itself reads it).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# Extra server flags for `make run` and `make conformance`, e.g.
# make run ARGS="--port 9000 --host 0.0.0.0"
ARGS ?=
# Autobahn case globs for `make conformance` (empty: groups 1-7 and 10).
CASES ?=

.PHONY: run build test test-rust test-browser conformance fmt lint clean bench

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
# starts its own redis-server, Debian's package, installed when missing;
# tests/nginx.rs starts its own nginx in front of the server, with TLS at
# nginx (Debian's package, installed when missing, its service never started);
# tests/conformance.rs runs the Autobahn cases (`make conformance`, about
# 10 s) with kosoku, installed into target/conformance-venv when missing.
test-rust:
	bash tests/prometheus/setup.sh >/dev/null
	bash tests/redis/setup.sh
	bash tests/nginx/setup.sh
	bash tests/conformance/setup.sh >/dev/null
	$(CARGO) test --workspace --all-targets

test-browser:
	$(CARGO) build --bin threadchat
	bash client/tests/setup.sh
	cd client && THREADCHAT_BIN=$(TARGET_DIR)/debug/threadchat npm test

# The Autobahn TestSuite's WebSocket cases against the server's
# --conformance-echo path (kosoku, installed into target/conformance-venv):
# groups 1-7 and 10, a table of verdicts, reports in target/conformance/.
# The large-message cases need larger limits:
#   make conformance CASES='9.*' ARGS='--max-message-bytes 16777216 --outbound-bytes 67108864'
conformance:
	$(CARGO) build --bin threadchat
	CASES="$(CASES)" bash tests/conformance/run.sh $(ARGS)

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
