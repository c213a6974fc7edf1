# Shared by the bench scripts (sourced, not run): starting and stopping a
# server by PID, one experiment appended to $RESULTS, and the builds an A/B
# compares. Expects STRESS, RESULTS, SERVER_CORE and LOAD_CORE set (and
# TARGET, the build directory, for the builds); sets PORT and SERVER_PID.

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


# build_commit COMMIT WORKTREE: prints COMMIT's short sha, whose release
# binary is then $TARGET/ab/threadchat-SHA, built once, in a temporary
# worktree at WORKTREE sharing $TARGET, so only the crate itself is
# compiled anew.
build_commit() {
    local sha
    sha=$(git rev-parse --short "$1")
    if [[ ! -x "$TARGET/ab/threadchat-$sha" ]]; then
        mkdir -p "$TARGET/ab"
        rm -rf "$2"
        git worktree add --detach "$2" "$1" >/dev/null
        (cd "$2" && CARGO_TARGET_DIR="$TARGET" cargo build --release --bin threadchat)
        cp "$TARGET/release/threadchat" "$TARGET/ab/threadchat-$sha"
        git worktree remove --force "$2"
    fi
    echo "$sha"
}

# build_checkout: prints this checkout's short sha (with "+changes" when its
# sources differ from it), whose release binary is then
# $TARGET/ab/threadchat-current. A worktree built into $TARGET has fresher
# files than the checkout, and cargo, judging by times, would take that build
# for this one and the A/B would measure one build twice: so the crate's
# roots are touched first.
build_checkout() {
    local sha
    sha="$(git rev-parse --short HEAD)"
    if [[ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock)" ]]; then
        sha="$sha+changes"
    fi
    touch src/lib.rs src/main.rs
    cargo build --release --bin threadchat
    mkdir -p "$TARGET/ab"
    cp "$TARGET/release/threadchat" "$TARGET/ab/threadchat-current"
    echo "$sha"
}
