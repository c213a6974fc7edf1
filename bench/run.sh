#!/usr/bin/env bash
# `make bench`: threadchat and the course's Python server under the same load,
# side by side, then docs/bench.md and docs/bench.svg from the numbers.
#
# Each server runs pinned to core 0 and the load generator (chat-stress) to
# core 1, so neither steals the other's CPU; everything is on loopback. Every
# experiment is bounded by its own --timeout, and this script stops the
# servers it started (by PID) however it exits. Takes about 22 minutes.
#
# `bash bench/run.sh relay` runs only the relay (fan-out, storm, rooms, hold,
# slow readers, churn, the tunings, the Python reference and the tokio peer),
# `bash bench/run.sh presence` runs only the login storm both ways (presence
# as whole lists and as changes),
# `bash bench/run.sh history` runs only the history comparison (issue 9),
# `bash bench/run.sh cluster` only the nodes over Redis (issue 12),
# `bash bench/run.sh tls` only native TLS against plain and nginx (issue 20;
# `bash bench/tls.sh` does the same).
set -euo pipefail
cd "$(dirname "$0")/.."

RESULTS=bench/results.jsonl
VENV=bench/.venv
STRESS=target/release/chat-stress
SERVER_CORE=0
LOAD_CORE=1

# Both packages: the server and the stress tool (stress/); and the tokio
# peer, a project of its own (kept out of the workspace and of `make test`),
# into target/tokio-peer.
cargo build --release --workspace
cargo build --release --manifest-path bench/tokio-peer/Cargo.toml --target-dir target/tokio-peer

if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet websockets
fi

# The tool opens up to ~11,000 sockets at once; so does the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# These runs measure the relay. Where the server keeps a chat history (an
# archive on disk, issue 9), it is switched off, so the numbers stay
# comparable with those of servers without one.
THREADCHAT_FLAGS=(--rate-limit 0 --log-level warn)
if target/release/threadchat --help | grep -- '--history' >/dev/null; then
    THREADCHAT_FLAGS+=(--history 0)
fi
# The load comes from a few loopback addresses, thousands of connections
# each, and `hold` keeps most of them open without logging in: the limit
# per address and the login deadline, where the server has them, would
# refuse or close exactly the load being measured, so they are off here.
if target/release/threadchat --help | grep -- '--max-connections-per-ip' >/dev/null; then
    THREADCHAT_FLAGS+=(--max-connections-per-ip 0 --login-timeout 0)
fi

# free_port, wait_for_port, stop_server, stress, settle.
# shellcheck source=bench/common.sh
source bench/common.sh
# tls_part, tls_section (and stop_nginx).
# shellcheck source=bench/tls.sh
source bench/tls.sh

# The standard set, for one server. $2 scales the message counts down for a
# server that needs longer for the same work.
standard_set() {
    local name=$1 long=$2
    stress "$name" fanout --users 10 --senders 10 --messages 5000 --timeout 60
    stress "$name" fanout --users 100 --senders 10 --messages $((2000 / long)) --timeout 90
    stress "$name" fanout --users 1000 --senders 10 --messages $((500 / long)) --timeout 240
    stress "$name" fanout --users 100 --senders 10 --messages 200 --rate 20 --timeout 60
    stress "$name" slow --users 50 --slow 5 --senders 10 --messages $((4000 / long)) \
        --text-bytes 1000 --timeout 120
    stress "$name" hold --connections 1000 --logged-in 100 --timeout 60
}

# The relay: every experiment above, against threadchat (history off), its
# tunings switched off, and the Python reference.
relay_part() {
    PORT=$(free_port)
    # Idle timeout and ping interval raised so held idle connections (which never
    # answer pings) are not dropped during the hold experiment.
    taskset -c "$SERVER_CORE" target/release/threadchat --host 127.0.0.1 --port "$PORT" \
        "${THREADCHAT_FLAGS[@]}" --max-connections 20000 --idle-timeout 600 --ping-interval 300 \
        >bench/threadchat.log 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT"
    standard_set threadchat 1
    stress threadchat churn --workers 50 --duration 10 --timeout 60
    # Many rooms: 10,000 logged-in users in 100 rooms of 100, at full speed and at 2 messages a second per room (the 20,000
    # deliveries/s of the steady fan-out, over 100 times the users). The Python
    # reference has no rooms.
    stress threadchat rooms --rooms 100 --users 100 --senders 1 --messages 500 --timeout 240
    stress threadchat rooms --rooms 100 --users 100 --senders 1 --messages 30 --rate 2 --timeout 240
    # Last, as they are the heaviest: 10,000 connections (1,000 logged in),
    # then 15,000 idle ones (never logged in), within the default
    # vm.max_map_count and kernel.pid_max.
    stress threadchat hold --connections 10000 --logged-in 1000 --connectors 16 --timeout 180
    stress threadchat hold --connections 15000 --logged-in 0 --connectors 16 --timeout 240
    stop_server

    # What each tuning buys: the same server with one batching switched off.
    # Named "threadchat <flags>", the report gives these a table of their own.
    for flags in "--broadcast-batch-bytes 0" "--write-batch 1" "--broadcast-batch-bytes 0 --write-batch 1"; do
        PORT=$(free_port)
        # shellcheck disable=SC2086 # $flags is a list of flags
        taskset -c "$SERVER_CORE" target/release/threadchat --host 127.0.0.1 --port "$PORT" \
            "${THREADCHAT_FLAGS[@]}" $flags >>bench/threadchat.log 2>&1 &
        SERVER_PID=$!
        wait_for_port "$PORT"
        stress "threadchat $flags" fanout --users 100 --senders 10 --messages 2000 --timeout 90
        stress "threadchat $flags" fanout --users 100 --senders 10 --messages 200 --rate 20 --timeout 60
        stop_server
    done

    PORT=$(free_port)
    taskset -c "$SERVER_CORE" "$VENV/bin/python" bench/python_ref.py --port "$PORT" \
        >bench/python.log 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT"
    standard_set python 4
    stop_server

    # The tokio peer (bench/tokio-peer): the same set, and the same 15,000
    # idle connections.
    PORT=$(free_port)
    taskset -c "$SERVER_CORE" target/tokio-peer/release/tokio-peer --host 127.0.0.1 --port "$PORT" \
        >bench/tokio.log 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT"
    standard_set tokio 1
    stress tokio hold --connections 15000 --logged-in 0 --connectors 16 --timeout 240
    stop_server
}

# What keeping a history costs (issue 9): the 100-user fan-out at full speed
# and at the steady 20,000 deliveries/s, with history off, on (the default)
# and on with --fsync. The modes alternate over HISTORY_ROUNDS rounds, each
# run on a fresh server and a fresh history file, so that the shared
# machine's slow moments fall on all three; the report takes the medians.
# Five rounds, not three: on this shared machine single full-speed runs of
# one build spread by 30% and more, and a median of three let history on
# come out 18% faster than off.
HISTORY_ROUNDS=5
history_part() {
    HISTORY_DIR=$(mktemp -d -t threadchat-bench.XXXXXX)
    local filesystem
    filesystem=$(stat -f -c %T "$HISTORY_DIR")
    if [[ "$filesystem" == tmpfs ]]; then
        echo "   ($HISTORY_DIR is in memory (tmpfs): --fsync costs nothing there; set TMPDIR to a disk)" >&2
    fi
    for round in $(seq "$HISTORY_ROUNDS"); do
        for mode in off on fsync; do
            history_run "$mode" "$filesystem" "$HISTORY_DIR/$round-$mode-full.db" \
                --users 100 --senders 10 --messages 2000 --timeout 90
            history_run "$mode" "$filesystem" "$HISTORY_DIR/$round-$mode-steady.db" \
                --users 100 --senders 10 --messages 200 --rate 20 --timeout 60
        done
    done
    rm -rf "$HISTORY_DIR"
    HISTORY_DIR=
}

# history_run MODE FILESYSTEM DB FANOUT-ARGS...: one fan-out against a fresh
# server in that history mode; the archivist's commits during the run, from
# /metrics, are added to its JSON line as "archive".
history_run() {
    local mode=$1 filesystem=$2 db=$3
    shift 3
    local flags=(--rate-limit 0 --log-level warn)
    case $mode in
    off) flags+=(--history 0) ;;
    on) flags+=(--db "$db") ;;
    fsync) flags+=(--db "$db" --fsync) ;;
    esac
    start_server bench/threadchat.log target/release/threadchat "${flags[@]}"
    local lines before after
    lines=$(wc -l <"$RESULTS")
    before=$(archive_metrics)
    stress "history $mode" fanout "$@"
    after=$(archive_metrics)
    stop_server
    rm -f "$db" "$db-wal" "$db-shm"
    if (($(wc -l <"$RESULTS") > lines)); then
        add_archive "$before" "$after" "$filesystem"
    fi
}

# The archivist's commit histograms, as NAME=VALUE words.
archive_metrics() {
    curl -sf "http://127.0.0.1:$PORT/metrics" |
        awk '/^threadchat_archive_commit_(seconds|messages)_(count|sum) / { print $1 "=" $2 }'
}

# add_archive BEFORE AFTER FILESYSTEM: the differences, into the last line.
add_archive() {
    python3 - "$RESULTS" "$@" <<'PY'
import json, sys

path, before, after, filesystem = sys.argv[1:]
def parse(words):
    return {k: float(v) for k, v in (w.split("=") for w in words.split())}
b, a = parse(before), parse(after)
def delta(name):
    return a.get("threadchat_archive_commit_" + name, 0.0) - b.get("threadchat_archive_commit_" + name, 0.0)
with open(path) as f:
    lines = f.read().splitlines()
last = json.loads(lines[-1])
last["result"]["archive"] = {
    "commits": delta("seconds_count"),
    "commit_seconds": delta("seconds_sum"),
    "messages": delta("messages_sum"),
    "filesystem": filesystem,
}
lines[-1] = json.dumps(last, separators=(",", ":"), ensure_ascii=False)
with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

# Several nodes over Redis (issue 12): the 100-user fan-out, at full speed
# and at the steady 20,000 deliveries/s, against one node without Redis
# (SQLite history on, as users run it), one node with Redis, and two nodes on
# one Redis with the users spread over both. Each run gets fresh nodes and a
# fresh, empty Redis (no persistence, in a temporary directory). Redis runs
# on the server's core, next to the nodes: with two cores, the two-node run
# shares one core among both nodes and Redis, so it measures what the
# cluster costs, not how it scales. The setups alternate over CLUSTER_ROUNDS
# rounds; the report takes the medians.
#
# Redis's CPU is utime + stime of its process (/proc/PID/stat) over the run
# (nodes already started: login, chat and leave); its commands, EVALSHA
# calls and bytes from INFO. Both go into the run's JSON line as "redis".
CLUSTER_ROUNDS=${CLUSTER_ROUNDS:-3}
CLUSTER_PREFIX="cluster "
cluster_part() {
    bash tests/redis/setup.sh
    CLUSTER_DIR=$(mktemp -d -t threadchat-cluster.XXXXXX)
    for round in $(seq "$CLUSTER_ROUNDS"); do
        echo "-- cluster round $round of $CLUSTER_ROUNDS" >&2
        for setup in "1 node, SQLite" "1 node, Redis" "2 nodes, Redis"; do
            cluster_run "$setup" --users 100 --senders 10 --messages 2000 --timeout 90
            cluster_run "$setup" --users 100 --senders 10 --messages 200 --rate 20 --timeout 60
        done
    done
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=
}

# cluster_run SETUP FANOUT-ARGS...: one fan-out against fresh nodes (and a
# fresh Redis), all pinned to the server's core.
NODE_PIDS=()
NODE_PORTS=()
REDIS_PID=
REDIS_PORT=
cluster_run() {
    local setup=$1
    shift
    local name="$CLUSTER_PREFIX$setup" flags=(--rate-limit 0 --log-level warn) nodes=1
    case $setup in
    *SQLite) flags+=(--db "$CLUSTER_DIR/history.db") ;;
    *)
        start_redis
        flags+=(--redis "redis://127.0.0.1:$REDIS_PORT/")
        ;;
    esac
    [[ $setup == 2* ]] && nodes=2
    local args=() i
    for ((i = 0; i < nodes; i++)); do
        start_node "${flags[@]}"
        args+=(--url "ws://127.0.0.1:${NODE_PORTS[i]}/" --server-pid "${NODE_PIDS[i]}")
    done
    [[ -z "$REDIS_PID" ]] || redis_sample "$CLUSTER_DIR/before"
    local lines started ended
    lines=$(wc -l <"$RESULTS")
    started=$(date +%s.%N)
    echo "== $name: $*" >&2
    if ! taskset -c "$LOAD_CORE" "$STRESS" fanout "$@" "${args[@]}" \
        --server-name "$name" --json >>"$RESULTS"; then
        echo "   (failed: $name)" >&2
    fi
    ended=$(date +%s.%N)
    tail -n 1 "$RESULTS" | cut -c 1-200 >&2
    if [[ -n "$REDIS_PID" ]] && (($(wc -l <"$RESULTS") > lines)); then
        redis_sample "$CLUSTER_DIR/after"
        add_redis "$CLUSTER_DIR/before" "$CLUSTER_DIR/after" "$started" "$ended"
    fi
    stop_cluster
    rm -f "$CLUSTER_DIR"/history.db*
}

# start_node FLAGS...: one more threadchat, on the server's core
# (common.sh's start_server, its PID then kept here rather than there).
start_node() {
    start_server bench/threadchat.log target/release/threadchat "$@"
    NODE_PIDS+=("$SERVER_PID")
    NODE_PORTS+=("$PORT")
    SERVER_PID=
}

# A fresh, empty Redis on a free loopback port, on the server's core.
start_redis() {
    REDIS_PORT=$(free_port)
    rm -rf "$CLUSTER_DIR/redis"
    mkdir "$CLUSTER_DIR/redis"
    taskset -c "$SERVER_CORE" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save "" --appendonly no --dir "$CLUSTER_DIR/redis" \
        --logfile "$CLUSTER_DIR/redis/redis.log" &
    REDIS_PID=$!
    wait_for_port "$REDIS_PORT"
    redis-cli -p "$REDIS_PORT" ping >/dev/null
}

# The nodes first (they leave the cluster), then Redis; each by its PID.
stop_cluster() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${NODE_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    NODE_PIDS=()
    NODE_PORTS=()
    if [[ -n "$REDIS_PID" ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=
    fi
}

# redis_sample FILE: Redis's CPU in clock ticks (utime + stime, fields 14
# and 15 of /proc/PID/stat, counted after the name, which ends with ") ")
# and its INFO stats and commandstats, into FILE.
redis_sample() {
    {
        echo "cpu_ticks:$(sed 's/.*) //' "/proc/$REDIS_PID/stat" | awk '{ print $12 + $13 }')"
        redis-cli -p "$REDIS_PORT" info stats
        redis-cli -p "$REDIS_PORT" info commandstats
    } | tr -d '\r' >"$1"
}

# add_redis BEFORE AFTER STARTED ENDED: the differences, into the last line.
add_redis() {
    python3 - "$RESULTS" "$(getconf CLK_TCK)" "$@" <<'PY'
import json, sys

path, clk_tck, before, after, started, ended = sys.argv[1:]
def parse(file):
    values = {}
    for line in open(file):
        key, _, value = line.strip().partition(":")
        if key.startswith("cmdstat_"):
            for word in value.split(","):
                k, _, v = word.partition("=")
                values[key + "." + k] = float(v)
        elif value:
            try:
                values[key] = float(value)
            except ValueError:
                pass
    return values
b, a = parse(before), parse(after)
def delta(name):
    return a.get(name, 0.0) - b.get(name, 0.0)
with open(path) as f:
    lines = f.read().splitlines()
last = json.loads(lines[-1])
last["result"]["redis"] = {
    "cpu_s": delta("cpu_ticks") / float(clk_tck),
    "wall_s": float(ended) - float(started),
    "commands": delta("total_commands_processed"),
    "evalsha_calls": delta("cmdstat_evalsha.calls"),
    "evalsha_usec": delta("cmdstat_evalsha.usec"),
    "net_input_bytes": delta("total_net_input_bytes"),
    "net_output_bytes": delta("total_net_output_bytes"),
}
lines[-1] = json.dumps(last, separators=(",", ":"), ensure_ascii=False)
with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

# cluster_section: the markdown of the cluster's runs in the results (none:
# nothing), medians per setup, then every run.
cluster_section() {
    python3 - "$RESULTS" "$CLUSTER_PREFIX" <<'PY'
import json, statistics, sys

path, prefix = sys.argv[1:]
runs = [json.loads(l) for l in open(path) if l.startswith("{")]
runs = [r for r in runs if r["server"].startswith(prefix) and r["test"] == "fanout"]
if not runs:
    sys.exit(0)
SETUPS = ["1 node, SQLite", "1 node, Redis", "2 nodes, Redis"]

def row(r):
    x = r["result"]
    chats = x["senders"] * x["messages"]
    cpu = x["chat_cpu"]
    out = {
        "setup": r["server"][len(prefix):],
        "steady": x["rate"] > 0,
        "rate": x["rate"],
        "users": x["users"], "senders": x["senders"], "messages": x["messages"],
        "window": x["window"],
        "dps": x["deliveries_per_s"],
        "p50": x["latency"]["p50_us"] / 1000, "p99": x["latency"]["p99_us"] / 1000,
        "server_cpu": cpu["server_cpu_s"] / cpu["wall_s"] if cpu["wall_s"] else 0,
        "server_us": cpu["server_cpu_s"] / x["delivered"] * 1e6 if x["delivered"] else 0,
        "tool_cpu": cpu["tool_cpu_s"] / cpu["wall_s"] if cpu["wall_s"] else 0,
        "chats": chats,
        "chats_per_s": chats / x["chat_s"] if x["chat_s"] else 0,
        "bad": (x["lost"], x["duplicated"], x["out_of_order"]),
        "errors": len(x["errors"]),
        "redis": None,
    }
    if "redis" in x:
        rd = x["redis"]
        out["redis"] = {
            "cpu_s": rd["cpu_s"],
            "share": rd["cpu_s"] / rd["wall_s"] if rd["wall_s"] else 0,
            "us_per_chat": rd["cpu_s"] / chats * 1e6,
            "script_us": rd["evalsha_usec"] / rd["evalsha_calls"] if rd["evalsha_calls"] else 0,
            "evalsha": rd["evalsha_calls"],
            "commands_per_chat": rd["commands"] / chats,
            "out_per_chat": rd["net_output_bytes"] / chats,
        }
    return out

rows = [row(r) for r in runs]
machines = sorted({r.get("machine", "not recorded") for r in runs})

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def pct(v):
    return "—" if v is None else f"{v * 100:.0f}%"

def num(v):
    # 20000 -> "20,000", as elsewhere in the report.
    return f"{v:,.0f}"

def medians(steady):
    out = []
    for setup in SETUPS:
        rs = [r for r in rows if r["setup"] == setup and r["steady"] == steady]
        if not rs:
            continue
        rd = [r["redis"] for r in rs if r["redis"]]
        m = {k: med([r[k] for r in rs]) for k in ("dps", "p50", "p99", "server_cpu", "server_us", "chats_per_s")}
        for k in ("share", "us_per_chat", "script_us", "commands_per_chat", "out_per_chat"):
            m["r_" + k] = med([r[k] for r in rd]) if rd else None
        m["setup"], m["runs"], m["first"] = setup, len(rs), rs[0]
        out.append(m)
    return out

print("\n## Several nodes over Redis\n")
print(
    f"Machine: {'; '.join(machines)}. The 100-user fan-out (10 senders) against one "
    "threadchat node without Redis (SQLite history on, its default, as users run it), one "
    "node with `--redis`, and two nodes on one Redis with the users spread over both "
    "(`chat-stress --url A --url B`, round-robin; a chat sent on one node reaches the other's "
    "users through Redis). Each run starts fresh nodes and a fresh, empty `redis-server` on a "
    "free loopback port (`--save \"\" --appendonly no`, a temporary `--dir`), stopped by PID "
    "afterwards; the setups alternate over the rounds of one `bash bench/run.sh cluster` and each "
    "row is the median of its runs, all listed below. All chats are stored: in SQLite or in the "
    "room's Redis stream, with one Lua script (EVALSHA: INCR, TIME, XADD, PUBLISH) per chat.\n"
)
print(
    "**This machine has 2 cores.** The nodes *and Redis* run on core 0 (`taskset -c 0`), the "
    "load generator on core 1. So the two-node run shares one core between two nodes and "
    "Redis: it measures what spreading users over nodes *costs* (every chat crosses Redis and "
    "is delivered by both nodes), not how the cluster scales; on separate machines each node "
    "would have its own cores. Compare the rows with each other, within this run.\n"
)
print(
    "*Server CPU per delivery* is the nodes' CPU time (summed) over the chat phase divided by "
    "the deliveries. *Redis CPU per chat* is Redis's utime + stime (`/proc/PID/stat`) from "
    "after the nodes started to the end of the run (logins, chat, leaving, the nodes' lease "
    "renewals) divided by the chats stored (senders × messages); *in the script* is Redis's own "
    "account of its time inside EVALSHA (`INFO commandstats`, per call), without reading and "
    "answering the request. *Redis commands per chat* counts each EVALSHA and the commands it runs (INCR, TIME, XADD, PUBLISH: 5 a chat); *bytes out* is all "
    "Redis sent (replies and every published chat, once per subscribed node) per chat.\n"
)
full = medians(False)
base = next((m for m in full if m["setup"] == SETUPS[0]), None)
if full:
    r0 = full[0]["first"]
    tool = [r["tool_cpu"] for r in rows if not r["steady"]]
    print(f"At full speed the load generator's core is the limit (it ran at {pct(min(tool))} to {pct(max(tool))} "
          "of its core), so deliveries/s differ more from run to run than from setup to setup; the CPU "
          "per delivery and Redis's CPU per chat are the figures to compare.\n")
    print(f"Full speed ({r0['senders']} senders × {num(r0['messages'])} messages, window {r0['window']}; {r0['users']} users):\n")
    print("| setup | runs | deliveries/s | vs 1 node, SQLite | p50 | p99 | server CPU | server CPU per delivery (µs) | chats/s | Redis CPU | Redis CPU per chat (µs) | in the script (µs) | Redis commands per chat | Redis bytes out per chat |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in full:
        vs = pct(m["dps"] / base["dps"]) if base else "—"
        print(f"| {m['setup']} | {m['runs']} | {m['dps']:.0f} | {vs} | {m['p50']:.1f} | {m['p99']:.1f} | "
              f"{pct(m['server_cpu'])} | {m['server_us']:.2f} | {m['chats_per_s']:.0f} | {pct(m['r_share'])} | "
              f"{'—' if m['r_us_per_chat'] is None else format(m['r_us_per_chat'], '.1f')} | "
              f"{'—' if m['r_script_us'] is None else format(m['r_script_us'], '.1f')} | "
              f"{'—' if m['r_commands_per_chat'] is None else format(m['r_commands_per_chat'], '.1f')} | "
              f"{'—' if m['r_out_per_chat'] is None else format(m['r_out_per_chat'], '.0f')} |")
steady = medians(True)
if steady:
    r0 = steady[0]["first"]
    print(f"\nSteady {num(r0['senders'] * r0['rate'] * r0['users'])} deliveries/s ({r0['senders']} senders × {r0['rate']:.0f} msg/s, {r0['senders'] * r0['rate']:.0f} chats/s; {r0['users']} users). At this rate chats arrive one by one: Redis wakes up, reads, runs the script and publishes once per chat, on the core it shares with the nodes, where at full speed the courier's pipelines hand it many chats per wake-up. So a chat costs Redis several times more here than at full speed (an idle Redis costs next to nothing: its timer runs 10 times a second). The figure still includes the run's 100 logins and departures:\n")
    print("| setup | runs | deliveries/s | p50 | p99 | server CPU | Redis CPU | Redis CPU per chat (µs) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in steady:
        print(f"| {m['setup']} | {m['runs']} | {m['dps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
              f"{pct(m['server_cpu'])} | {pct(m['r_share'])} | "
              f"{'—' if m['r_us_per_chat'] is None else format(m['r_us_per_chat'], '.1f')} |")
bad = sum(sum(r["bad"]) for r in rows) + sum(r["errors"] for r in rows)
print(f"\nLost, duplicated or reordered deliveries, or errors, over all {len(rows)} runs: {bad}.\n")
print("Every run, in the order run:\n")
print("| setup | load | deliveries/s | p50 | p99 | server CPU | Redis CPU (s) | EVALSHA calls | lost / dup / reordered | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
for r in rows:
    load = f"{r['senders']} × {r['rate']:.0f} msg/s" if r["steady"] else "full speed"
    rd = r["redis"]
    print(f"| {r['setup']} | {load} | {r['dps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {pct(r['server_cpu'])} | "
          f"{'—' if not rd else format(rd['cpu_s'], '.2f')} | {'—' if not rd else format(rd['evalsha'], '.0f')} | "
          f"{r['bad'][0]} / {r['bad'][1]} / {r['bad'][2]} | {r['errors']} |")
PY
}

# Presence at lecture scale: the 1,000-user login storm into one room, with
# the tutorial's whole lists and with "presence":"changes", alternating over
# PRESENCE_ROUNDS rounds against one server (history off, like the relay).
PRESENCE_ROUNDS=3
presence_part() {
    PORT=$(free_port)
    taskset -c "$SERVER_CORE" target/release/threadchat --host 127.0.0.1 --port "$PORT" \
        "${THREADCHAT_FLAGS[@]}" --max-connections 20000 >>bench/threadchat.log 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT"
    for _ in $(seq "$PRESENCE_ROUNDS"); do
        for mode in lists changes; do
            stress "presence $mode" storm --users 1000 --presence "$mode" --timeout 120
        done
    done
    # Bytes per user should grow with N, not N²: changes at larger N, up to
    # what the server holds here (it caps itself below vm.max_map_count).
    for users in 2000 4000 8000; do
        stress "presence changes" storm --users "$users" --presence changes --timeout 120
    done
    stop_server
}

# `bench/run.sh` runs every part on fresh results; `bench/run.sh history`
# (or `relay`, `presence`, `cluster`) runs only that part, replacing its lines in the results,
# and writes the report again from them all.
HISTORY_DIR=
CLUSTER_DIR=
trap 'stop_nginx; stop_server; stop_cluster; [[ -z "$HISTORY_DIR" ]] || rm -rf "$HISTORY_DIR"; [[ -z "$CLUSTER_DIR" ]] || rm -rf "$CLUSTER_DIR"; [[ -z "$TLS_DIR" ]] || rm -rf "$TLS_DIR"' EXIT
if (($# == 0)); then
    : >"$RESULTS"
    relay_part
    presence_part
    history_part
    cluster_part
    tls_part
else
    for part in "$@"; do
        case $part in
        history)
            grep -v '"server":"history ' "$RESULTS" >"$RESULTS.tmp" || true
            mv "$RESULTS.tmp" "$RESULTS"
            history_part
            ;;
        relay)
            # Every line another part wrote stays; the relay's go.
            grep -E "\"server\":\"(history |presence |$CLUSTER_PREFIX)" "$RESULTS" >"$RESULTS.tmp" || true
            mv "$RESULTS.tmp" "$RESULTS"
            relay_part
            ;;
        presence)
            grep -v '"server":"presence ' "$RESULTS" >"$RESULTS.tmp" || true
            mv "$RESULTS.tmp" "$RESULTS"
            presence_part
            ;;
        cluster)
            grep -v "\"server\":\"$CLUSTER_PREFIX" "$RESULTS" >"$RESULTS.tmp" || true
            mv "$RESULTS.tmp" "$RESULTS"
            cluster_part
            ;;
        tls)
            # Its own results file (bench/tls.jsonl), started afresh.
            tls_part
            ;;
        report)
            # Nothing run: the report is written again from the results.
            ;;
        *)
            echo "unknown part: $part (known: relay, history, presence, cluster, tls, report)" >&2
            exit 2
            ;;
        esac
    done
fi

# The cluster's runs are left out of `chat-stress report`, whose tables
# compare servers, and get their section from cluster_section below.
RELAY_RESULTS=$(mktemp -t threadchat-results.XXXXXX)
grep -v "\"server\":\"$CLUSTER_PREFIX" "$RESULTS" >"$RELAY_RESULTS" || true
# The metrics A/B (bench/metrics_ab.sh, run by hand) keeps its own file.
INPUTS=(--input "$RELAY_RESULTS")
if [[ -s bench/metrics_ab.jsonl ]]; then
    INPUTS+=(--input bench/metrics_ab.jsonl)
fi
"$STRESS" report "${INPUTS[@]}" --markdown docs/bench.md --svg docs/bench.svg
rm -f "$RELAY_RESULTS"
cluster_section >>docs/bench.md
tls_section >>docs/bench.md
# The last A/B against an earlier build, with the tokio peer
# (bench/ab.sh, run by hand), when there is one.
if [[ -s bench/ab.md ]]; then
    cat bench/ab.md >>docs/bench.md
fi
# The endpoints' cost beside a chat (bench/endpoints.sh, run by hand, its
# figures written up in bench/endpoints.md), when there is one.
if [[ -s bench/endpoints.md ]]; then
    cat bench/endpoints.md >>docs/bench.md
fi
