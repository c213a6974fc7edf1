#!/usr/bin/env bash
# Runs the Autobahn TestSuite's WebSocket cases (kosoku, installed by
# setup.sh) against threadchat's --conformance-echo path, prints a table of
# verdicts per case group (summary.py) and exits non-zero if any case failed.
#
#   bash tests/conformance/run.sh [extra server flags…]
#
# Environment:
#   THREADCHAT_BIN       the server binary (default: target/debug/threadchat)
#   CASES                case globs (default: groups 1-7 and 10; 9.* are the
#                        large-message cases, which need a larger
#                        --max-message-bytes and --outbound-bytes)
#   CONFORMANCE_REPORTS  where the reports go (default: target/conformance)
#   CONFORMANCE_TIMEOUT  seconds the whole run may take (default: 600)
#
# Everything stays on 127.0.0.1: the server binds an ephemeral loopback port.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${THREADCHAT_BIN:-$TARGET/debug/threadchat}"
OUT="${CONFORMANCE_REPORTS:-$TARGET/conformance}"
CASES="${CASES:-1.* 2.* 3.* 4.* 5.* 6.* 7.* 10.*}"
ECHO_PATH=/echo

fail() {
  echo "tests/conformance/run.sh: $*" >&2
  exit 1
}

[ -x "$BIN" ] || fail "no server binary at $BIN (cargo build --bin threadchat)"
KOSOKU="$(bash "$ROOT/tests/conformance/setup.sh")"
rm -rf "$OUT"
mkdir -p "$OUT"

# The rate limit is off: the suite sends hundreds of messages a second on
# one connection. Every other limit is the default unless given.
# The log exists before the server starts: the redirection below happens in
# the background child, which a loaded machine may not have run yet when the
# loop reads the log.
: >"$OUT/server.log"
"$BIN" --host 127.0.0.1 --port 0 --db :memory: --history 0 --rate-limit 0 \
  --conformance-echo "$ECHO_PATH" "$@" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

# The server's start-up line names its address.
ADDR=""
for _ in $(seq 100); do
  ADDR="$(sed -n 's|.*listening: open http://\([0-9.]*:[0-9]*\)/.*|\1|p' "$OUT/server.log" | head -1)"
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER" 2>/dev/null || fail "the server did not start: $(cat "$OUT/server.log")"
  sleep 0.1
done
[ -n "$ADDR" ] || fail "the server did not say where it listens within 10 s"

INCLUDE=()
for case in $CASES; do INCLUDE+=(-i "$case"); done
echo "conformance: kosoku against ws://$ADDR$ECHO_PATH, cases $CASES" >&2
START=$SECONDS
STATUS=0
timeout "${CONFORMANCE_TIMEOUT:-600}" "$KOSOKU" "ws://$ADDR$ECHO_PATH" "${INCLUDE[@]}" -o "$OUT" \
  >"$OUT/kosoku.log" 2>&1 || STATUS=$?
[ -f "$OUT/index.json" ] || fail "kosoku wrote no report (exit $STATUS): $(tail -20 "$OUT/kosoku.log")"
python3 "$ROOT/tests/conformance/summary.py" "$OUT/index.json" || STATUS=1
echo "took $((SECONDS - START)) s; reports in $OUT/index.html" >&2
exit "$STATUS"
