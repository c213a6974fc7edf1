#!/usr/bin/env bash
# Do the operator's endpoints and the history API cost the chat anything?
# `bash bench/endpoints.sh BINARY [BINARY...]`: each threadchat binary in
# turn (a fresh server and history file each time, pinned as in `make
# bench`), ROUNDS times (3 by default), runs `chat-stress endpoints`: a
# room of 100 chats at full speed (10 senders x MESSAGES, 2,000 by default),
# once alone and once
# while HTTP clients ask /readyz, /api/stats and a page of older messages,
# REQUESTS_PER_S together (200 by default). Prints, per binary, the medians
# of the chat's p99 alone and with the requests, and their ratio.
#
# CONTROL=1 also runs each binary, in each round, with no requests at all (the
# room twice alone, labelled `control`): how far the ratio strays from 1 by
# itself. On a 2-core machine the two halves of one run differ by tens of
# percent either way, so read a ratio against its control, over many ROUNDS.
#
# SERVER_FLAGS adds flags to every server (say `--fsync`, where a probe
# per /readyz costs a disk sync). To compare with an older commit, build it first (bench/ab.sh shows how)
# and pass both binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

(($# > 0)) || { echo "usage: bash bench/endpoints.sh BINARY [BINARY...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
REQUESTS_PER_S=${REQUESTS_PER_S:-200}
MESSAGES=${MESSAGES:-2000}
CONTROL=${CONTROL:-0}
IDLE=${IDLE:-0} # connections held open, silent, besides the room's users
PATHS=${PATHS:-} # the paths asked, comma-separated (empty: the stress tool's three)
read -r -a SERVER_FLAGS <<<"${SERVER_FLAGS:-}" # more flags for every server, e.g. --fsync
RESULTS=${RESULTS:-bench/endpoints.jsonl}
STRESS=${STRESS:-${CARGO_TARGET_DIR:-target}/release/chat-stress}
SERVER_CORE=0
LOAD_CORE=1

# shellcheck source=bench/common.sh
source bench/common.sh

DB_DIR=$(mktemp -d -t threadchat-endpoints.XXXXXX)
cleanup() {
    stop_server
    rm -rf "$DB_DIR"
}
trap cleanup EXIT

[[ -x "$STRESS" ]] || cargo build --release -p chat-stress
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: >"$RESULTS"
binaries=("$@")
for round in $(seq "$ROUNDS"); do
    for i in "${!binaries[@]}"; do
        binary=${binaries[$i]}
        start_server bench/endpoints.log "$binary" $(load_flags "$binary") --rate-limit 0 --log-level warn \
            --db "$DB_DIR/round-$round-$i.db" "${SERVER_FLAGS[@]}"
        stress "$i $binary" endpoints --users 100 --senders 10 --messages "$MESSAGES" \
            --requests-per-s "$REQUESTS_PER_S" --idle "$IDLE" --timeout 120 \
            ${PATHS:+--paths "$PATHS"}
        stop_server
        if ((CONTROL)); then
            start_server bench/endpoints.log "$binary" $(load_flags "$binary") --rate-limit 0 \
                --log-level warn --db "$DB_DIR/round-$round-$i-control.db" "${SERVER_FLAGS[@]}"
            stress "$i $binary control" endpoints --users 100 --senders 10 --messages "$MESSAGES" \
                --requests-per-s 0 --idle "$IDLE" --timeout 120
            stop_server
        fi
    done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {}
for run in runs:
    r = run["result"]
    by.setdefault(run["server"], []).append(r)
print(f"{'binary':50} {'p99 alone':>10} {'p99 with':>10} {'ratio':>6} {'spread':>10} {'sent/s':>7}  answers (ok/503/failed)")
for name, rs in by.items():
    alone = statistics.median(r["baseline"]["latency"]["p99_us"] for r in rs) / 1000
    loaded = statistics.median(r["loaded"]["latency"]["p99_us"] for r in rs) / 1000
    ratio = statistics.median(r["p99_ratio"] for r in rs)
    spread = f"{min(r['p99_ratio'] for r in rs):.2f}-{max(r['p99_ratio'] for r in rs):.2f}"
    sent = statistics.median(r["sent_per_s"] for r in rs)
    answers = " ".join(
        f"{a['path'].split('?')[0].rsplit('/', 1)[-1]}:{a['ok']}/{a['unavailable']}/{a['failed']}"
        for a in rs[-1]["answers"])
    print(f"{name[-50:]:50} {alone:9.2f}ms {loaded:9.2f}ms {ratio:6.2f} {spread:>10} {sent:7.0f}  {answers}")
print(f"(medians of {len(next(iter(by.values())))} rounds; ratio = p99 with / p99 alone, per run;")
print(" spread: the lowest and highest ratio of the rounds)")
# Against the controls: the same phase of a fresh server (the second, after
# as many chats) with and without the requests, so that what the second
# phase costs by itself (a fuller store) is on both sides.
for name, rs in by.items():
    control = by.get(name + " control")
    if not control:
        continue
    loaded = statistics.median(r["loaded"]["latency"]["p99_us"] for r in rs)
    quiet = statistics.median(r["loaded"]["latency"]["p99_us"] for r in control)
    print(f"{name[-50:]:50} second phase p99 with requests / without: "
          f"{loaded / 1000:.2f} / {quiet / 1000:.2f} ms = {loaded / quiet:.2f}")
PY
