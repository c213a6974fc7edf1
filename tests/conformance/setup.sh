#!/usr/bin/env bash
# Installs the WebSocket conformance suite that tests/conformance.rs and
# `make conformance` run against the server: kosoku, which drives the
# Autobahn TestSuite's own case files from a runner written in Rust (the
# original runner needs Python 2), in a virtual environment under target/,
# only when it is missing. Prints the path of the venv's kosoku.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${CARGO_TARGET_DIR:-$ROOT/target}/conformance-venv"
PACKAGE="kosoku==0.1.0"

fail() {
  echo "tests/conformance/setup.sh: $*" >&2
  exit 1
}

command -v python3 >/dev/null || fail "python3 is missing (apt-get install python3 python3-venv)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || fail "kosoku needs Python 3.10 or newer; this is $(python3 --version)"

if ! "$VENV/bin/python" -c "import kosoku" 2>/dev/null; then
  echo "setup: installing $PACKAGE into $VENV" >&2
  python3 -m venv "$VENV" >&2 || fail "python3 -m venv failed (apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$PACKAGE" >&2 \
    || fail "pip install $PACKAGE failed"
  "$VENV/bin/python" -c "import kosoku" \
    || fail "$PACKAGE installed, yet it cannot be imported"
fi
echo "$VENV/bin/kosoku"
