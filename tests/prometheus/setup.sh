#!/usr/bin/env bash
# Installs the independent parser that tests/metrics.rs checks /metrics with:
# Python's prometheus_client (the Prometheus project's own Python client), in a
# virtual environment under target/, only when it is missing. Prints the path
# of the venv's python. Called by the test itself and by `make test-rust`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${CARGO_TARGET_DIR:-$ROOT/target}/prometheus-venv"
PACKAGE="prometheus-client==0.26.0"

fail() {
  echo "tests/prometheus/setup.sh: $*" >&2
  exit 1
}

command -v python3 >/dev/null || fail "python3 is missing (apt-get install python3 python3-venv)"

if ! "$VENV/bin/python" -c "import prometheus_client.openmetrics.parser" 2>/dev/null; then
  echo "setup: installing $PACKAGE into $VENV" >&2
  python3 -m venv "$VENV" >&2 || fail "python3 -m venv failed (apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$PACKAGE" >&2 \
    || fail "pip install $PACKAGE failed"
  "$VENV/bin/python" -c "import prometheus_client.openmetrics.parser" \
    || fail "$PACKAGE installed, yet it cannot be imported"
fi
echo "$VENV/bin/python"
