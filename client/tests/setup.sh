#!/usr/bin/env bash
# Installs what the browser tests need, only when it is missing:
#   - Debian's Chromium at /usr/bin/chromium (apt-get; Playwright's own browser
#     download cannot work here, so it is never attempted);
#   - Node.js and npm, from Debian, on a machine that lacks them;
#   - client/node_modules, from package-lock.json (npm ci).
# Fails loudly rather than letting the tests skip.
set -euo pipefail

CLIENT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHROMIUM=/usr/bin/chromium

fail() {
  echo "client/tests/setup.sh: $*" >&2
  exit 1
}

# Installs Debian packages, as root or through sudo; apt-get update runs once.
APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || fail "no apt-get here; install $* by hand"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "installing $* needs root (or sudo)"
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$APT_UPDATED" ]; then
    $sudo apt-get update -q || fail "apt-get update failed"
    APT_UPDATED=yes
  fi
  $sudo apt-get install -y -q "$@" || fail "apt-get install $* failed"
}

if [ ! -x "$CHROMIUM" ]; then
  echo "setup: $CHROMIUM is missing; installing Debian's chromium package"
  apt_install chromium
  [ -x "$CHROMIUM" ] || fail "chromium installed, yet $CHROMIUM is still missing"
fi

if ! command -v npm >/dev/null; then
  echo "setup: npm is missing; installing Debian's nodejs and npm packages"
  apt_install nodejs npm
fi

# npm writes node_modules/.package-lock.json on every install; a committed
# lock file newer than it means the dependencies changed since then.
cd "$CLIENT_DIR"
INSTALLED=node_modules/.package-lock.json
if [ ! -f "$INSTALLED" ] || [ package-lock.json -nt "$INSTALLED" ]; then
  echo "setup: client/node_modules is missing or stale; running npm ci"
  npm ci --no-audit --no-fund || fail "npm ci failed"
fi

[ -d node_modules/playwright-core ] || fail "playwright-core is missing from client/node_modules"
echo "setup: chromium and client/node_modules are ready"
