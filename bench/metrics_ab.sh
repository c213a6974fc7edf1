#!/usr/bin/env bash
# What the metrics cost (issue 11), by hand: `bash bench/metrics_ab.sh
# [COMMIT]`. Not part of `make bench`, because it builds an old commit.
#
# The metrics cannot be switched off, so the build without them is COMMIT
# (default ae9379a, the last one before they were added), built in a
# temporary git worktree that is removed again. It shares target/ with this
# checkout, so only the crate itself is compiled anew; its binary is copied to
# target/ab/ before this checkout's build puts target/release/threadchat back.
#
# Then the 100-user full-speed fan-out (history off) runs against the two
# builds alternately, ROUNDS times each (A B A B A B by default), a fresh
# server each time, pinned as in `make bench`. The lines go to
# bench/metrics_ab.jsonl (make bench starts its own results afresh, so they
# live apart) and docs/bench.md is written again from both files.
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${1:-ae9379a}
ROUNDS=${ROUNDS:-3}
RESULTS=bench/metrics_ab.jsonl
STRESS=target/release/chat-stress
SERVER_CORE=0
LOAD_CORE=1
FLAGS=(--rate-limit 0 --log-level warn --history 0)

# shellcheck source=bench/common.sh
source bench/common.sh

WORKTREE=$(mktemp -d -t threadchat-ab.XXXXXX)
cleanup() {
    stop_server
    git worktree remove --force "$WORKTREE" 2>/dev/null || rm -rf "$WORKTREE"
}
trap cleanup EXIT

before_sha=$(git rev-parse --short "$BEFORE")
with_sha=$(git rev-parse --short HEAD)
if [[ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock)" ]]; then
    with_sha="$with_sha+changes"
fi
mkdir -p target/ab
if [[ ! -x "target/ab/threadchat-$before_sha" ]]; then
    rmdir "$WORKTREE"
    git worktree add --detach "$WORKTREE" "$BEFORE" >/dev/null
    (cd "$WORKTREE" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --release --bin threadchat)
    cp target/release/threadchat "target/ab/threadchat-$before_sha"
fi
cargo build --release --workspace
cp target/release/threadchat target/ab/threadchat-current

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: >"$RESULTS"
for _ in $(seq "$ROUNDS"); do
    for build in without with; do
        if [[ $build == without ]]; then
            binary=target/ab/threadchat-$before_sha sha=$before_sha
        else
            binary=target/ab/threadchat-current sha=$with_sha
        fi
        start_server bench/threadchat.log "$binary" "${FLAGS[@]}"
        stress "metrics-ab $build $sha" fanout --users 100 --senders 10 --messages 2000 --timeout 90
        stop_server
    done
done

"$STRESS" report --input bench/results.jsonl --input "$RESULTS" \
    --markdown docs/bench.md --svg docs/bench.svg
