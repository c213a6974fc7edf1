#!/usr/bin/env bash
# Installs what the cluster tests (tests/cluster.rs) need: Debian's
# redis-server, only when no `redis-server` is on PATH. The tests start their
# own server on a free loopback port (tests/common/redis.rs); this script never
# starts, enables or configures one. Quiet when there is nothing to do, and
# fails loudly rather than letting the tests skip.
set -euo pipefail

fail() {
  echo "tests/redis/setup.sh: $*" >&2
  exit 1
}

command -v redis-server >/dev/null && exit 0

command -v apt-get >/dev/null || fail "redis-server is missing and there is no apt-get here; install Redis (redis-server) by hand"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || fail "installing redis-server needs root (or sudo)"
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup: redis-server is missing; installing Debian's redis-server package" >&2
# apt's chatter is kept, and shown only when a step fails.
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
$SUDO apt-get update -q >"$LOG" 2>&1 || { cat "$LOG" >&2; fail "apt-get update failed"; }
$SUDO apt-get install -y -q --no-install-recommends redis-server >"$LOG" 2>&1 \
  || { cat "$LOG" >&2; fail "apt-get install redis-server failed"; }
command -v redis-server >/dev/null \
  || fail "redis-server installed, yet it is not on PATH"
echo "setup: $(redis-server --version | cut -d' ' -f1-3) is ready" >&2
