#!/usr/bin/env bash
# Two builds side by side, by hand: `bash bench/ab.sh BEFORE [AFTER]`.
# Not part of `make bench`, because it builds old commits.
#
# For a change that should cost nothing (a refactoring) or one whose cost
# is the point (the broadcast path): BEFORE (a commit) and AFTER (a commit,
# default: this checkout, changes included) are built in release mode, then
# three loads run against the two builds alternately, ROUNDS times (A B A B
# A B by default), a fresh server each time, pinned as in `make bench`:
#
#   - full-speed fan-out, history off: 100 users, 10 senders x 2,000;
#   - the same with history on (a fresh SQLite file per server);
#   - a steady 20,000 deliveries/s: 10 senders at 20 chats/s to 100 users.
#
# Alternating in one session puts the machine's drift on both sides. The
# lines go to bench/ab.jsonl, and the medians and AFTER/BEFORE ratios of
# deliveries/s, server CPU per delivery and p99 latency are printed.
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${1:?usage: bash bench/ab.sh BEFORE [AFTER]}
AFTER=${2:-}
ROUNDS=${ROUNDS:-3}
RESULTS=bench/ab.jsonl
# The build directory: $CARGO_TARGET_DIR when set, as cargo does.
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
STRESS=$TARGET/release/chat-stress
SERVER_CORE=0
LOAD_CORE=1

# shellcheck source=bench/common.sh
source bench/common.sh

WORKTREE=$(mktemp -d -t threadchat-ab.XXXXXX)
DB_DIR=$(mktemp -d -t threadchat-ab-db.XXXXXX)
cleanup() {
    stop_server
    git worktree remove --force "$WORKTREE" 2>/dev/null || rm -rf "$WORKTREE"
    rm -rf "$DB_DIR"
}
trap cleanup EXIT

# build COMMIT: $TARGET/ab/threadchat-SHA, built in a temporary worktree
# sharing $TARGET, so only the crate itself is compiled anew.
build() {
    local sha
    sha=$(git rev-parse --short "$1")
    if [[ ! -x "$TARGET/ab/threadchat-$sha" ]]; then
        rm -rf "$WORKTREE"
        git worktree add --detach "$WORKTREE" "$1" >/dev/null
        (cd "$WORKTREE" && CARGO_TARGET_DIR="$TARGET" cargo build --release --bin threadchat)
        cp "$TARGET/release/threadchat" "$TARGET/ab/threadchat-$sha"
        git worktree remove --force "$WORKTREE"
    fi
    echo "$sha"
}

mkdir -p "$TARGET/ab"
before_sha=$(build "$BEFORE")
if [[ -n "$AFTER" ]]; then
    after_sha=$(build "$AFTER")
    after_bin=$TARGET/ab/threadchat-$after_sha
else
    after_sha="$(git rev-parse --short HEAD)"
    if [[ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock)" ]]; then
        after_sha="$after_sha+changes"
    fi
    cargo build --release --workspace
    cp "$TARGET/release/threadchat" "$TARGET/ab/threadchat-current"
    after_bin=$TARGET/ab/threadchat-current
fi
cargo build --release -p chat-stress

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    for side in before after; do
        if [[ $side == before ]]; then
            binary=$TARGET/ab/threadchat-$before_sha sha=$before_sha
        else
            binary=$after_bin sha=$after_sha
        fi
        start_server bench/threadchat.log "$binary" $(load_flags "$binary") --rate-limit 0 --log-level warn --history 0
        stress "ab $side $sha off" fanout --users 100 --senders 10 --messages 2000 --timeout 90
        stress "ab $side $sha steady" fanout --users 100 --senders 10 --messages 200 --rate 20 --timeout 60
        stop_server
        start_server bench/threadchat.log "$binary" $(load_flags "$binary") --rate-limit 0 --log-level warn \
            --db "$DB_DIR/round-$round-$side.db"
        stress "ab $side $sha history" fanout --users 100 --senders 10 --messages 2000 --timeout 90
        stop_server
    done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
table = {}
for run in runs:
    _, side, sha, load = run["server"].split(" ", 3)
    r = run["result"]
    cpu_us = 1e6 * r["chat_cpu"]["server_cpu_s"] / max(r["delivered"], 1)
    table.setdefault((load, side), []).append((r["deliveries_per_s"], cpu_us, r["latency"]["p99_us"] / 1000))
print(f"{'load':8} {'side':6} {'deliveries/s':>13} {'CPU us/delivery':>16} {'p99 ms':>8}   (medians of {len(table.get(('off','before'), []))})")
for load in ["off", "history", "steady"]:
    med = {}
    for side in ["before", "after"]:
        rows = table.get((load, side), [])
        if not rows:
            continue
        med[side] = [statistics.median(col) for col in zip(*rows)]
        d, c, p = med[side]
        print(f"{load:8} {side:6} {d:13.0f} {c:16.3f} {p:8.2f}")
    if len(med) == 2:
        b, a = med["before"], med["after"]
        print(f"{load:8} {'ratio':6} {a[0]/b[0]:13.2f} {a[1]/b[1]:16.2f} {a[2]/b[2]:8.2f}   after/before")
PY
