#!/usr/bin/env bash
# What TLS costs (issue 20), in one run: `bash bench/tls.sh` on its own
# (about 6 minutes), or as part of `make bench` (bench/run.sh sources this
# file and calls tls_part and tls_section).
#
# Three setups, alternating over TLS_ROUNDS rounds (a fresh server each run,
# pinned as in `make bench`: servers on core 0, the load on core 1):
#
#   - plain: threadchat on ws://;
#   - native TLS: threadchat with --tls-cert, wss:// straight to it;
#   - nginx TLS: Debian's nginx terminating TLS (README "Deploying", the
#     same recipe) in front of plain threadchat on loopback, both on core 0,
#     their CPU added up (nginx runs as one process: master_process off).
#
# In each: the full-speed fan-out (100 users, 10 senders x 2,000 chats):
# deliveries/s, p99, server CPU per delivery. Then, for plain and native
# TLS, `hold` (2,000 connections, 100 logged in): connections established
# per second by 16 connecting threads (TCP, TLS and WebSocket handshakes)
# and the server's memory per idle connection.
#
# The load generator speaks TLS too (chat-stress --tls-ca, rustls): it
# decrypts every delivery, so at full speed its core may be the limit;
# the tool's CPU share is reported beside each run so this can be seen.
#
# Certificates: a CA and a leaf made here with openssl, in a temporary
# directory removed at the end. Results go to bench/tls.jsonl; the section
# "Native TLS" of docs/bench.md is written from them (`bash bench/tls.sh
# report` writes it again without running anything).

# When run on its own rather than sourced by bench/run.sh.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    cd "$(dirname "$0")/.."
    TARGET=${CARGO_TARGET_DIR:-target}
    STRESS=$TARGET/release/chat-stress
    SERVER_CORE=0
    LOAD_CORE=1
    [[ "${1:-}" == report ]] || cargo build --release --workspace
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    # shellcheck source=bench/common.sh
    source bench/common.sh
    TLS_STANDALONE=1
fi

TLS_RESULTS=bench/tls.jsonl
TLS_ROUNDS=${TLS_ROUNDS:-3}
TLS_BIN=${TARGET:-target}/release/threadchat
# History off (these runs measure the relay), no limits per address or on
# logging in (the load comes from one address, and `hold` keeps most
# connections silent), idle connections kept through the hold.
TLS_FLAGS=(--rate-limit 0 --log-level warn --history 0 --max-connections-per-ip 0
    --login-timeout 0 --idle-timeout 600 --ping-interval 300)
TLS_DIR=
NGINX_PID=
NGINX_PORT=

# A CA and a leaf for localhost and 127.0.0.1, signed by it.
make_certificates() {
    TLS_DIR=$(mktemp -d -t threadchat-tls-bench.XXXXXX)
    (
        cd "$TLS_DIR"
        local p256=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        openssl req -x509 "${p256[@]}" -keyout ca.key -out ca.pem -days 7 \
            -subj "/CN=threadchat bench CA" 2>/dev/null
        openssl req "${p256[@]}" -keyout leaf.key -out leaf.csr -subj "/CN=localhost" 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out leaf.crt -extfile leaf.ext -days 7 2>/dev/null
        cat leaf.crt ca.pem >fullchain.pem
    )
}

# nginx with TLS on a free port in front of plain threadchat on $PORT, on the
# server's core; everything it writes stays in $TLS_DIR/nginx.
start_nginx() {
    local dir=$TLS_DIR/nginx
    rm -rf "$dir"
    mkdir -p "$dir"
    NGINX_PORT=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        server_name localhost;
        ssl_certificate $TLS_DIR/fullchain.pem;
        ssl_certificate_key $TLS_DIR/leaf.key;
        location / {
            proxy_pass http://127.0.0.1:$PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header Forwarded "";
            proxy_read_timeout 75s;
            proxy_send_timeout 75s;
        }
    }
}
EOF
    local nginx
    nginx=$(command -v nginx || echo /usr/sbin/nginx)
    taskset -c "$SERVER_CORE" "$nginx" -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 &
    NGINX_PID=$!
    wait_for_port "$NGINX_PORT"
}

stop_nginx() {
    if [[ -n "$NGINX_PID" ]]; then
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=
    fi
}

# tls_stress NAME URL PIDS SUBCOMMAND ARGS...: one experiment (PIDS: the
# server processes, comma-separated), its JSON line appended to the results.
tls_stress() {
    local name=$1 url=$2 pids=$3
    shift 3
    local pid_args=() pid
    for pid in ${pids//,/ }; do
        pid_args+=(--server-pid "$pid")
    done
    echo "== tls $name: $*" >&2
    if ! taskset -c "$LOAD_CORE" "$STRESS" "$@" --url "$url" --tls-ca "$TLS_DIR/ca.pem" \
        "${pid_args[@]}" --server-name "tls $name" --json >>"$TLS_RESULTS"; then
        echo "   (failed: $name $1)" >&2
    fi
    tail -n 1 "$TLS_RESULTS" | cut -c 1-160 >&2
    settle
}

# tls_run SETUP SUBCOMMAND ARGS...: a fresh server (and nginx) for one run.
tls_run() {
    local setup=$1
    shift
    case $setup in
    plain)
        start_server bench/threadchat.log "$TLS_BIN" "${TLS_FLAGS[@]}"
        tls_stress "$setup" "ws://127.0.0.1:$PORT/" "$SERVER_PID" "$@"
        ;;
    native)
        start_server bench/threadchat.log "$TLS_BIN" "${TLS_FLAGS[@]}" \
            --tls-cert "$TLS_DIR/fullchain.pem" --tls-key "$TLS_DIR/leaf.key"
        tls_stress "$setup" "wss://localhost:$PORT/" "$SERVER_PID" "$@"
        ;;
    nginx)
        start_server bench/threadchat.log "$TLS_BIN" "${TLS_FLAGS[@]}" --trusted-proxy 127.0.0.1
        start_nginx
        tls_stress "$setup" "wss://localhost:$NGINX_PORT/" "$SERVER_PID,$NGINX_PID" "$@"
        stop_nginx
        ;;
    esac
    stop_server
}

tls_part() {
    bash tests/nginx/setup.sh
    make_certificates
    : >"$TLS_RESULTS"
    # How busy the machine was: other work shares both cores.
    printf '{"test":"loadavg","server":"tls","loadavg":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$TLS_RESULTS"
    local round setup
    for round in $(seq "$TLS_ROUNDS"); do
        echo "-- tls round $round of $TLS_ROUNDS" >&2
        for setup in plain native nginx; do
            tls_run "$setup" fanout --users 100 --senders 10 --messages 2000 --timeout 90
        done
        for setup in plain native; do
            tls_run "$setup" hold --connections 2000 --logged-in 100 --connectors 16 --timeout 120
        done
    done
    rm -rf "$TLS_DIR"
    TLS_DIR=
}

# The markdown of the TLS runs (none: nothing).
tls_section() {
    python3 - "$TLS_RESULTS" <<'PY'
import json, statistics, sys

try:
    runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
except FileNotFoundError:
    sys.exit(0)
if not runs:
    sys.exit(0)
SETUPS = [("plain", "plain ws"), ("native", "native TLS"), ("nginx", "nginx TLS → plain")]
med = statistics.median

def fanout(setup):
    out = []
    for r in runs:
        if r["test"] != "fanout" or r["server"] != "tls " + setup:
            continue
        x = r["result"]
        c = x["chat_cpu"]
        out.append({
            "dps": x["deliveries_per_s"],
            "p99": x["latency"]["p99_us"] / 1000,
            "us": 1e6 * c["server_cpu_s"] / max(x["delivered"], 1),
            "server": c["server_cpu_s"] / c["wall_s"] if c["wall_s"] else 0,
            "tool": c["tool_cpu_s"] / c["wall_s"] if c["wall_s"] else 0,
            "bad": x["lost"] + x["duplicated"] + x["out_of_order"] + len(x["errors"]),
        })
    return out

def hold(setup):
    out = []
    for r in runs:
        if r["test"] != "hold" or r["server"] != "tls " + setup:
            continue
        x = r["result"]
        out.append({
            "per_s": x["establish_per_s"],
            "idle_kib": x["idle_kib_per_connection"] or 0,
            "opened": x["opened"], "connections": x["connections"],
            "cpu_ms": 1e3 * x["cpu"]["server_cpu_s"] / max(x["opened"], 1),
            "errors": len(x["errors"]),
        })
    return out

print("\n## Native TLS\n")
print("Written by `bash bench/tls.sh` (also run by `make bench`). Three setups, alternating over "
      "the rounds of one run, each run on a fresh server: threadchat on plain ws; threadchat "
      "with `--tls-cert` (rustls, TLS 1.3, ECDSA P-256 certificate); and Debian's nginx "
      "terminating TLS in front of plain threadchat on loopback, with the recipe of README "
      "\"Deploying\" (nginx as one process, `master_process off`, on the server's core beside "
      "threadchat; their CPU is added up). The load generator speaks TLS with rustls "
      "(`chat-stress --tls-ca`), so it decrypts every delivery on its own core.\n")
load = [r["loadavg"] for r in runs if r["test"] == "loadavg"]
if load:
    print(f"Load average when the run began: {load[0]} (1, 5 and 15 minutes; this machine has 2 cores, "
          "so anything above 2 is other work competing with the run).\n")
rows = {s: fanout(s) for s, _ in SETUPS}
base = med([r["dps"] for r in rows["plain"]]) if rows["plain"] else None
n = max((len(v) for v in rows.values()), default=0)
print(f"Full-speed fan-out (100 users, 10 senders × 2,000 chats), medians of {n} runs:\n")
print("| setup | deliveries/s | of plain | p99 (ms) | server CPU per delivery (µs) | server CPU | tool CPU |")
print("|---|---:|---:|---:|---:|---:|---:|")
for setup, label in SETUPS:
    rs = rows[setup]
    if not rs:
        continue
    d = med([r["dps"] for r in rs])
    share = f"{d / base * 100:.0f}%" if base else "—"
    print(f"| {label} | {d:,.0f} | {share} | {med([r['p99'] for r in rs]):.1f} | "
          f"{med([r['us'] for r in rs]):.3f} | {med([r['server'] for r in rs]) * 100:.0f}% | "
          f"{med([r['tool'] for r in rs]) * 100:.0f}% |")
holds = {s: hold(s) for s, _ in SETUPS}
if any(holds.values()):
    print("\nConnections held (2,000, 100 of them logged in), opened by 16 threads of the tool; "
          "*established/s* counts TCP connect, TLS handshake (for TLS) and WebSocket handshake "
          "together; *server CPU per connection* is the server's CPU over the whole hold run "
          "(100 logins, 1,900 idle connections opened, held and closed) divided by the "
          "connections, so the difference between the rows is about what one TLS handshake "
          "costs the server; memory is the server's RSS growth per idle connection:\n")
    print("| setup | established/s | server CPU per connection (ms) | server memory per idle connection (KiB) | opened |")
    print("|---|---:|---:|---:|---:|")
    for setup, label in SETUPS:
        hs = holds[setup]
        if not hs:
            continue
        print(f"| {label} | {med([h['per_s'] for h in hs]):,.0f} | {med([h['cpu_ms'] for h in hs]):.2f} | {med([h['idle_kib'] for h in hs]):.1f} | "
              f"{min(h['opened'] for h in hs)} of {hs[0]['connections']} |")
bad = sum(r["bad"] for rs in rows.values() for r in rs)
print(f"\nLost, duplicated or reordered deliveries, or errors, over all fan-out runs: {bad}.\n")
print("Every fan-out run, in the order run:\n")
print("| setup | deliveries/s | p99 (ms) | server CPU per delivery (µs) | tool CPU |")
print("|---|---:|---:|---:|---:|")
for r in runs:
    if r["test"] != "fanout":
        continue
    x = r["result"]
    c = x["chat_cpu"]
    print(f"| {r['server'][4:]} | {x['deliveries_per_s']:,.0f} | {x['latency']['p99_us'] / 1000:.1f} | "
          f"{1e6 * c['server_cpu_s'] / max(x['delivered'], 1):.3f} | "
          f"{(c['tool_cpu_s'] / c['wall_s'] * 100) if c['wall_s'] else 0:.0f}% |")
PY
}

if [[ -n "${TLS_STANDALONE:-}" ]]; then
    trap 'stop_nginx; stop_server; [[ -z "$TLS_DIR" ]] || rm -rf "$TLS_DIR"' EXIT
    [[ "${1:-}" == report ]] || tls_part
    # The section replaces the one docs/bench.md has (always the last).
    python3 - docs/bench.md <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
cut = text.find("\n## Native TLS\n")
open(path, "w").write(text if cut < 0 else text[:cut].rstrip("\n") + "\n")
PY
    tls_section >>docs/bench.md
    tls_section
fi
