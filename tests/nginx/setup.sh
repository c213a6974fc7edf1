#!/usr/bin/env bash
# Installs what the reverse-proxy test (tests/nginx.rs) needs: Debian's
# nginx, only when no `nginx` is on PATH (or in /usr/sbin, where Debian puts
# it and where a non-root PATH may not look). The test starts its own nginx
# on a free loopback port with a configuration of its own; this script never
# starts, enables or configures the system's nginx service, and stops the one
# that installing the package may have started (Debian's packages start
# their service unless told otherwise). Quiet when there is nothing to do,
# and fails loudly rather than letting the test skip.
set -euo pipefail

fail() {
  echo "tests/nginx/setup.sh: $*" >&2
  exit 1
}

have_nginx() {
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]
}

have_nginx && exit 0

command -v apt-get >/dev/null || fail "nginx is missing and there is no apt-get here; install nginx by hand"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || fail "installing nginx needs root (or sudo)"
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup: nginx is missing; installing Debian's nginx package" >&2
# apt's chatter is kept, and shown only when a step fails.
LOG="$(mktemp)"
POLICY=""
cleanup() {
  rm -f "$LOG"
  [ -z "$POLICY" ] || $SUDO rm -f "$POLICY"
}
trap cleanup EXIT
# Debian starts a package's service at installation unless policy-rc.d says
# no (exit 101); the test wants the binary only. An existing policy-rc.d is
# left alone (it is the machine owner's).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  POLICY=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
fi
$SUDO apt-get update -q >"$LOG" 2>&1 || { cat "$LOG" >&2; fail "apt-get update failed"; }
# Debian 12's nginx-light is only a name for nginx plus the echo module;
# the plain package is what the test needs.
$SUDO apt-get install -y -q --no-install-recommends nginx >"$LOG" 2>&1 \
  || { cat "$LOG" >&2; fail "apt-get install nginx failed"; }
have_nginx || fail "nginx installed, yet there is no nginx on PATH or in /usr/sbin"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
echo "setup: $("$NGINX" -v 2>&1) is ready" >&2
