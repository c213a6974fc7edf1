#!/usr/bin/env bash
# A login storm on two nodes of a cluster, two builds side by side:
# `bash bench/cluster_storm.sh BEFORE [AFTER]`. Not part of `make bench`,
# because it builds old commits and needs `redis-server`.
#
# BEFORE (a commit) and AFTER (a commit, default: this checkout, changes
# included) are built in release mode. Then, ROUNDS times (2 by default),
# for each size in SIZES ("1000 3000"), each build takes a turn (BEFORE,
# AFTER): a fresh redis-server on a free loopback port, two nodes of the
# build on it, and `chat-stress storm --presence changes` with the users
# spread over both nodes. Besides the storm's own figures (time until every
# user sees the whole room, bytes received per user, the nodes' CPU) it
# records what went through Redis (INFO stats: total_net_input_bytes and
# total_net_output_bytes, which include what the two listeners were
# published), read once every user has been released after the storm tool
# closed its sockets: the input counts every claim and release; the output
# is mostly the logins' messages, as a node stops listening to a room once
# its last user is gone, so most departures' messages reach no one. Lines
# go to bench/cluster_storm.jsonl; the medians and AFTER/BEFORE ratios are
# printed (and kept in bench/cluster_storm.md). Nothing is pinned: on a
# busy machine alternating is what puts the drift on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${1:?usage: bash bench/cluster_storm.sh BEFORE [AFTER]}
AFTER=${2:-}
ROUNDS=${ROUNDS:-2}
SIZES=${SIZES:-"1000 3000"}
RESULTS=bench/cluster_storm.jsonl
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
STRESS=$TARGET/release/chat-stress

# free_port, wait_for_port, build_commit, build_checkout.
# shellcheck source=bench/common.sh
source bench/common.sh

WORK=$(mktemp -d -t threadchat-cluster-storm.XXXXXX)
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    git worktree remove --force "$WORK/tree" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (at most 60 s) until no room on the Redis at port $1 has users.
released() {
    for _ in $(seq 120); do
        local left=0 key
        for key in $(redis-cli -p "$1" --scan --pattern '*:users'); do
            left=$((left + $(redis-cli -p "$1" hlen "$key")))
        done
        ((left == 0)) && return 0
        sleep 0.5
    done
    echo "   (users still listed after 60 s)" >&2
}

# The bytes Redis has read and written since it started.
redis_bytes() {
    redis-cli -p "$1" info stats | tr -d '\r' |
        awk -F: '/^total_net_input_bytes/ {i=$2} /^total_net_output_bytes/ {o=$2} END {print i, o}'
}

if [[ -n "$AFTER" ]]; then
    after_sha=$(build_commit "$AFTER" "$WORK/tree")
    after_bin=$TARGET/ab/threadchat-$after_sha
else
    after_sha=$(build_checkout)
    after_bin=$TARGET/ab/threadchat-current
fi
before_sha=$(build_commit "$BEFORE" "$WORK/tree")
cargo build --release -p chat-stress

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: >"$RESULTS"
LOAD_AT_START=$(cut -d ' ' -f 1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    for users in $SIZES; do
        for side in before after; do
            case $side in
            before) binary=$TARGET/ab/threadchat-$before_sha sha=$before_sha ;;
            after) binary=$after_bin sha=$after_sha ;;
            esac
            redis_port=$(free_port)
            mkdir -p "$WORK/redis-$round-$users-$side"
            redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
                --dir "$WORK/redis-$round-$users-$side" --daemonize no >/dev/null 2>&1 &
            PIDS+=($!)
            wait_for_port "$redis_port"
            urls=() pids=()
            for node in 1 2; do
                port=$(free_port)
                "$binary" --host 127.0.0.1 --port "$port" --redis "redis://127.0.0.1:$redis_port/" \
                    --max-connections-per-ip 0 --login-timeout 0 --max-connections 20000 \
                    --log-level warn >>"$WORK/node.log" 2>&1 &
                PIDS+=($!)
                pids+=(--server-pid $!)
                wait_for_port "$port"
                urls+=(--url "ws://127.0.0.1:$port/")
            done
            read -r in_before out_before < <(redis_bytes "$redis_port")
            echo "== round $round, $users users, $side ($sha)" >&2
            if line=$("$STRESS" storm --users "$users" --presence changes "${urls[@]}" "${pids[@]}" \
                --timeout 120 --server-name "$side $sha $users" --json); then
                released "$redis_port"
                read -r in_after out_after < <(redis_bytes "$redis_port")
                python3 -c 'import json, sys
run = json.loads(sys.argv[1])
run["redis_in_bytes"] = int(sys.argv[3]) - int(sys.argv[2])
run["redis_out_bytes"] = int(sys.argv[5]) - int(sys.argv[4])
print(json.dumps(run))' "$line" "$in_before" "$in_after" "$out_before" "$out_after" >>"$RESULTS"
                tail -n 1 "$RESULTS" | cut -c 1-240 >&2
            else
                echo "   (failed: $side $users)" >&2
            fi
            stop_all
            sleep 2
        done
    done
done

# The medians as markdown, printed and kept in bench/cluster_storm.md.
python3 - "$RESULTS" "$before_sha" "$after_sha" "$LOAD_AT_START" "$(cut -d ' ' -f 1-3 /proc/loadavg)" <<'PY' | tee bench/cluster_storm.md
import json, statistics, sys
path, before_sha, after_sha, load_start, load_end = sys.argv[1:]
runs = [json.loads(line) for line in open(path) if line.strip()]
table = {}
for run in runs:
    side, _, users = run["server"].split(" ")
    r = run["result"]
    table.setdefault((int(users), side), []).append(
        (r.get("all_complete_s") or float("nan"), r["bytes_per_user"],
         run["redis_out_bytes"] / int(users), run["redis_in_bytes"] / int(users),
         r["cpu"]["server_cpu_s"]))
print(f"Login storm, two nodes on one Redis, --presence changes; before {before_sha}, after {after_sha}")
print(f"(load average {load_start} at the start, {load_end} at the end; medians of the rounds)\n")
print("| users | build | everyone complete (s) | received per user (bytes) | nodes' CPU in the storm (s) | Redis out per user (bytes) | Redis in per user (bytes) |")
print("|---|---|---|---|---|---|---|")
med = lambda rows, i: statistics.median(row[i] for row in rows)
for users in sorted({k[0] for k in table}):
    for side in ["before", "after"]:
        rows = table.get((users, side))
        if rows:
            print(f"| {users:,} | {side} | {med(rows, 0):.2f} | {med(rows, 1):,.0f} | {med(rows, 4):.2f} | {med(rows, 2):,.0f} | {med(rows, 3):,.0f} |")
    b, a = table.get((users, "before")), table.get((users, "after"))
    if a and b:
        print(f"| {users:,} | after/before | {med(a, 0) / med(b, 0):.2f} | {med(a, 1) / med(b, 1):.2f} | "
              f"{med(a, 4) / med(b, 4):.2f} | {med(a, 2) / med(b, 2):.3f} | {med(a, 3) / med(b, 3):.2f} |")
PY
