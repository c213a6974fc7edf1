# Shared by bench/run.sh and bench/metrics_ab.sh (sourced, not run): starting
# and stopping a server by PID, and one experiment appended to $RESULTS.
# Expects STRESS, RESULTS, SERVER_CORE and LOAD_CORE set; sets PORT and SERVER_PID.

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

# load_flags BINARY: the flags every benchmark server gets where BINARY has
# them. The load comes from a few loopback addresses, thousands of
# connections each, and some are held open without logging in: the limit per
# address and the login deadline would refuse or close exactly the load being
# measured, so they are off.
load_flags() {
    if "$1" --help | grep -- '--max-connections-per-ip' >/dev/null; then
        echo --max-connections-per-ip 0 --login-timeout 0
    fi
}

SERVER_PID=
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

# start_server LOG COMMAND ARGS...: COMMAND pinned to the server's core,
# listening on a fresh PORT (its flags must not name one), output to LOG.
start_server() {
    local log=$1
    shift
    PORT=$(free_port)
    taskset -c "$SERVER_CORE" "$@" --host 127.0.0.1 --port "$PORT" >>"$log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT"
}

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

