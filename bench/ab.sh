#!/usr/bin/env bash
# Two builds side by side, by hand: `bash bench/ab.sh BEFORE [AFTER]`.
# Not part of `make bench`, because it builds old commits.
#
# For a change that should cost nothing (a refactoring) or one whose cost
# is the point (the broadcast path): BEFORE (a commit) and AFTER (a commit,
# default: this checkout, changes included) are built in release mode, then
# the loads below run against the two builds alternately, ROUNDS times (A B
# A B A B by default), a fresh server each time, pinned as in `make bench`;
# with TOKIO=1 (the default) the tokio peer (bench/tokio-peer) takes a turn
# in each round too, on the loads it can serve (history off):
#
#   - full-speed fan-out, history off: 100 users, 10 senders x 2,000;
#   - the same with history on (a fresh SQLite file per server);
#   - a steady 20,000 deliveries/s: 10 senders at 20 chats/s to 100 users;
#   - IDLE idle connections held (WebSocket open, never logged in; 2,000 by
#     default, several counts as IDLE="5000 15000", 0 to skip), each count on
#     a fresh server (one that served the loads above would lend them the
#     memory its allocator kept): the server's memory per idle connection,
#     the kernel's (thread stacks, page tables, slab, socket buffers; both
#     ends of loopback) and the machine's (MemAvailable).
#
# Alternating in one session puts the machine's drift on both sides. The
# lines go to bench/ab.jsonl, and the medians and AFTER/BEFORE ratios of
# deliveries/s, server CPU per delivery and p99 latency are printed.
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${1:?usage: bash bench/ab.sh BEFORE [AFTER]}
AFTER=${2:-}
ROUNDS=${ROUNDS:-3}
TOKIO=${TOKIO:-1}
IDLE=${IDLE:-2000}
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

before_sha=$(build_commit "$BEFORE" "$WORKTREE")
if [[ -n "$AFTER" ]]; then
    after_sha=$(build_commit "$AFTER" "$WORKTREE")
    after_bin=$TARGET/ab/threadchat-$after_sha
else
    after_sha=$(build_checkout)
    after_bin=$TARGET/ab/threadchat-current
fi
cargo build --release -p chat-stress
SIDES=(before after)
if [[ $TOKIO == 1 ]]; then
    cargo build --release --manifest-path bench/tokio-peer/Cargo.toml --target-dir target/tokio-peer
    SIDES+=(tokio)
fi
# The idle connections come from one address and never log in: the limit
# per address and the login deadline are off (load_flags), as in `make bench`.
FLAGS=(--rate-limit 0 --log-level warn --max-connections 20000)

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: >"$RESULTS"
# Other work on the machine moves every figure: the load when the run began
# goes into the report.
LOAD_AT_START=$(cut -d ' ' -f 1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    for side in "${SIDES[@]}"; do
        case $side in
        before) binary=$TARGET/ab/threadchat-$before_sha sha=$before_sha ;;
        after) binary=$after_bin sha=$after_sha ;;
        tokio) binary=target/tokio-peer/release/tokio-peer sha=tokio ;;
        esac
        if [[ $side == tokio ]]; then
            start_server bench/tokio.log "$binary"
        else
            start_server bench/threadchat.log "$binary" $(load_flags "$binary") "${FLAGS[@]}" --history 0
        fi
        stress "ab $side $sha off" fanout --users 100 --senders 10 --messages 2000 --timeout 90
        stress "ab $side $sha steady" fanout --users 100 --senders 10 --messages 200 --rate 20 --timeout 60
        stop_server
        for idle in $IDLE; do
            ((idle > 0)) || continue
            if [[ $side == tokio ]]; then
                start_server bench/tokio.log "$binary"
            else
                start_server bench/threadchat.log "$binary" $(load_flags "$binary") "${FLAGS[@]}" --history 0
            fi
            stress "ab $side $sha idle" hold --connections "$idle" --logged-in 0 --timeout 180
            stop_server
        done
        [[ $side == tokio ]] && continue
        start_server bench/threadchat.log "$binary" $(load_flags "$binary") "${FLAGS[@]}" \
            --db "$DB_DIR/round-$round-$side.db"
        stress "ab $side $sha history" fanout --users 100 --senders 10 --messages 2000 --timeout 90
        stop_server
    done
done

# The medians as markdown, printed and kept in bench/ab.md, which
# `make bench` (bench/run.sh) appends to docs/bench.md.
python3 - "$RESULTS" "$before_sha" "$after_sha" "$ROUNDS" "$IDLE" "$LOAD_AT_START" <<'PY' | tee bench/ab.md
import json, statistics, sys
path, before_sha, after_sha, rounds, idle_n, load_at_start = sys.argv[1:]
runs = [json.loads(line) for line in open(path) if line.strip()]
table, idle = {}, {}
machine = runs[0].get("machine", "not recorded") if runs else "not recorded"
for run in runs:
    _, side, sha, load = run["server"].split(" ", 3)
    r = run["result"]
    if run["test"] == "hold":
        k = r.get("kernel_per_idle_connection") or {}
        kernel = sum(k.get(f, 0) for f in ("kernel_stack", "page_tables", "slab_unreclaimable",
                                            "slab_reclaimable", "tcp_buffers"))
        idle.setdefault((r["connections"], side), []).append((
            r.get("idle_kib_per_connection") or 0, kernel, k.get("kernel_stack", 0),
            k.get("slab_unreclaimable", 0) + k.get("slab_reclaimable", 0), k.get("tool_rss", 0),
            r.get("machine_kib_per_idle_connection") or 0,
            r.get("threads_per_connection") or 0, r.get("opened") or 0))
        continue
    cpu_us = 1e6 * r["chat_cpu"]["server_cpu_s"] / max(r["delivered"], 1)
    table.setdefault((load, side), []).append((r["deliveries_per_s"], cpu_us, r["latency"]["p99_us"] / 1000))
names = {"before": f"before ({before_sha})", "after": f"after ({after_sha})", "tokio": "tokio peer"}
sides = [s for s in ["before", "after", "tokio"] if any(k[1] == s for k in table)]
loads = {"off": "full speed, history off", "history": "full speed, history on",
         "steady": "steady 20,000 deliveries/s, history off"}
print("\n## Before and after, beside the tokio peer (`bench/ab.sh`)\n")
print(f"Machine: {machine}. `bash bench/ab.sh {before_sha}`: the builds and the tokio peer "
      f"(`bench/tokio-peer`) alternate, {rounds} rounds, a fresh server for each load, pinned as in "
      "`make bench`; every figure is the median of its runs. The 100-user fan-out (10 senders; "
      "2,000 chats each at full speed, 20 a second each when steady). Load average (1, 5, 15 min) "
      f"when the run began: {load_at_start}; compare the ratios, within this run.\n")
print("| load | server | runs | deliveries/s | server CPU per delivery (µs) | p99 (ms) |")
print("|---|---|---:|---:|---:|---:|")
med = {}
for load in loads:
    for side in sides:
        rows = table.get((load, side), [])
        if rows:
            med[(load, side)] = [statistics.median(col) for col in zip(*rows)]
            d, c, p = med[(load, side)]
            print(f"| {loads[load]} | {names[side]} | {len(rows)} | {d:,.0f} | {c:.3f} | {p:.2f} |")
print("\n| load | ratio | deliveries/s | CPU per delivery | p99 |")
print("|---|---|---:|---:|---:|")
for load in loads:
    for a, b in [("after", "before"), ("after", "tokio"), ("before", "tokio")]:
        if (load, a) in med and (load, b) in med:
            x, y = med[(load, a)], med[(load, b)]
            print(f"| {loads[load]} | {a} / {b} | {x[0]/y[0]:.2f} | {x[1]/y[1]:.2f} | {x[2]/y[2]:.2f} |")
if idle:
    print(f"\nIdle connections (WebSocket open, never logged in; {idle_n.replace(' ', ', then ')} at a time), each count "
          "on a fresh server, measured at the end of a 3-second hold: per idle connection, the "
          "server's resident memory (VmRSS); the kernel's part, from `/proc/meminfo` (kernel "
          "stacks, page tables, slab) and sockstat (TCP buffers), both ends of loopback together "
          "(the tool holds its end as a plain socket, no thread, so kernel stacks are the server's "
          "alone); the tool's own RSS; the machine's `MemAvailable` drop (everything, and whatever "
          "else the machine did meanwhile); and the server's threads.\n")
    print("| held | server | runs | server KiB | kernel KiB | of it kernel stacks | of it slab | tool KiB | MemAvailable KiB | threads per connection |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted({n for n, _ in idle}):
        for side in sides:
            if (n, side) in idle:
                rows = idle[(n, side)]
                k, kern, ks, slab, tool, m, t, o = [statistics.median(col) for col in zip(*rows)]
                print(f"| {o:,.0f} | {names[side]} | {len(rows)} | {k:.1f} | {kern:.1f} | {ks:.1f} | {slab:.1f} | {tool:.1f} | {m:.1f} | {t:.2f} |")
PY
