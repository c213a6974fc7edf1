#!/usr/bin/env bash
# `make bench`: threadchat and the course's Python server under the same load,
# side by side, then docs/bench.md and docs/bench.svg from the numbers.
#
# Each server runs pinned to core 0 and the load generator (chat-stress) to
# core 1, so neither steals the other's CPU; everything is on loopback. Every
# experiment is bounded by its own --timeout, and this script stops the
# servers it started (by PID) however it exits. Takes about 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

RESULTS=bench/results.jsonl
VENV=bench/.venv
STRESS=target/release/chat-stress
SERVER_CORE=0
LOAD_CORE=1

# Both packages: the server and the stress tool (stress/).
cargo build --release --workspace

if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet websockets
fi

# The tool opens up to ~11,000 sockets at once; so does the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# 10,000 connections are 20,000 server threads, and each thread costs 4
# memory mappings: more than the default vm.max_map_count (65,530) allows.
# Where this script may (as root), it raises the limit for the run and puts
# it back afterwards; elsewhere the server caps itself below it and the
# 10,000-connection hold reports refused connections.
MAP_COUNT_FILE=/proc/sys/vm/max_map_count
MAP_COUNT_BEFORE=$(cat "$MAP_COUNT_FILE")
MAP_COUNT_WANTED=131072
restore_map_count() {
    if [[ "$(cat "$MAP_COUNT_FILE")" != "$MAP_COUNT_BEFORE" ]]; then
        echo "$MAP_COUNT_BEFORE" >"$MAP_COUNT_FILE" 2>/dev/null || true
    fi
}
if ((MAP_COUNT_BEFORE < MAP_COUNT_WANTED)); then
    if (echo "$MAP_COUNT_WANTED" >"$MAP_COUNT_FILE") 2>/dev/null; then
        echo "vm.max_map_count raised from $MAP_COUNT_BEFORE to $MAP_COUNT_WANTED for this run" >&2
    else
        echo "vm.max_map_count is $MAP_COUNT_BEFORE and cannot be raised here" >&2
    fi
fi

# These runs measure the relay. Where the server keeps a chat history (an
# archive on disk, issue 9), it is switched off, so the numbers stay
# comparable with those of servers without one.
THREADCHAT_FLAGS=(--rate-limit 0 --log-level warn)
if target/release/threadchat --help | grep -- '--history' >/dev/null; then
    THREADCHAT_FLAGS+=(--history 0)
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
    for _ in $(seq 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    return 1
}

SERVER_PID=
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap 'stop_server; restore_map_count' EXIT

# stress NAME SUBCOMMAND ARGS...: one experiment, its JSON line appended to
# the results; a failed experiment is reported and the run goes on.
stress() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    if ! taskset -c "$LOAD_CORE" "$STRESS" "$@" --url "ws://127.0.0.1:$PORT/" \
        --server-pid "$SERVER_PID" --server-name "$name" --json >>"$RESULTS"; then
        echo "   (failed: $name $1)" >&2
    fi
    tail -n 1 "$RESULTS" | cut -c 1-200 >&2
    settle
}

# Waits (at most 30 s) until the server has given back the threads of the
# last run's connections, so the next run starts from an idle server and the
# machine's thread budget (kernel.pid_max) is free again.
settle() {
    sleep 1
    for _ in $(seq 60); do
        local threads
        threads=$(awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
        ((threads <= 16)) && return 0
        sleep 0.5
    done
    echo "   (the server still runs $threads threads)" >&2
}

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

: >"$RESULTS"

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
# Many rooms: 10,000 logged-in users in 100 rooms of 100 (see vm.max_map_count
# above), at full speed and at 2 messages a second per room (the 20,000
# deliveries/s of the steady fan-out, over 100 times the users). The Python
# reference has no rooms.
stress threadchat rooms --rooms 100 --users 100 --senders 1 --messages 500 --timeout 240
stress threadchat rooms --rooms 100 --users 100 --senders 1 --messages 30 --rate 2 --timeout 240
# Last, as it is the heaviest: see vm.max_map_count above.
stress threadchat hold --connections 10000 --logged-in 1000 --connectors 16 --timeout 180
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

"$STRESS" report --input "$RESULTS" --markdown docs/bench.md --svg docs/bench.svg
