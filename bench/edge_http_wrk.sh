#!/usr/bin/env bash
# bench/edge_http_wrk.sh — the edge's HTTP layer measured by an outside tool (wrk) beside
# ta-bench's own load generator: the four null servers of `ta-bench null` and ta-edge, each
# with the same single-event POST /v1/collect, rounds alternated so the machine's noise falls on
# every row alike.
#
#   cargo build --release --bins && bench/edge_http_wrk.sh [seconds per run, default 6] [rounds, default 2]
#
# TA_EDGE_OLD_BIN=<path> adds a row for another ta-edge build (for example the previous commit's),
# run in the same rounds. Needs wrk (Debian package). Kafka is pointed at a closed port: only the
# accept path is measured, as in `ta-bench edge`. wrk shares the 2 cores with the server.
set -euo pipefail

SECONDS_PER_RUN=${1:-6}
ROUNDS=${2:-2}
CONNECTIONS=${WRK_CONNECTIONS:-64}
source "$(dirname -- "${BASH_SOURCE[0]}")/wrk-common.sh"
BIN_DIR=${TA_BIN_DIR:-$REPO_ROOT/target/release}
for bin in ta-edge ta-bench; do
    [[ -x $BIN_DIR/$bin ]] || { echo "build first: cargo build --release --bins ($BIN_DIR/$bin missing)" >&2; exit 1; }
done

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

start_null() { # server port
    "$BIN_DIR/ta-bench" null --server "$1" --listen "127.0.0.1:$2" >/dev/null 2>&1 &
    PID=$!
}

declare -A RESULTS
ROWS=("null tide" "null tide on async-h1" "null hyper on async-std" "null hyper on tokio" "ta-edge")
[[ -n ${TA_EDGE_OLD_BIN:-} ]] && ROWS+=("ta-edge (old)")

measure() { # row
    local row=$1 port
    port=$(free_port)
    case $row in
        "null tide") start_null tide "$port" ;;
        "null tide on async-h1") start_null tide-h1 "$port" ;;
        "null hyper on async-std") start_null hyper-async-std "$port" ;;
        "null hyper on tokio") start_null hyper "$port" ;;
        "ta-edge") start_edge "$BIN_DIR/ta-edge" "$port" "$(free_port)" "$WORK/spool-$port" ;;
        "ta-edge (old)") start_edge "$TA_EDGE_OLD_BIN" "$port" "$(free_port)" "$WORK/spool-$port" ;;
    esac
    wait_port "$port"
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/collect.lua" \
        "http://127.0.0.1:$port/v1/collect" >"$WORK/wrk.txt"
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
    local rps p99 non2xx
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
    [[ -z $non2xx ]] || echo "  $row: $non2xx non-2xx answers" >&2
    RESULTS[$row]="${RESULTS[$row]:-}${RESULTS[$row]:+ / }$rps (p99 $p99)"
    echo "  round $r: $row $rps req/s, p99 $p99" >&2
}

for r in $(seq "$ROUNDS"); do
    for row in "${ROWS[@]}"; do
        measure "$row"
    done
done

echo
echo "wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, POST /v1/collect, $ROUNDS rounds alternated ($(date -u +%FT%TZ))"
echo
echo "| server | req/s per round (p99) |"
echo "|---|---|"
for row in "${ROWS[@]}"; do
    echo "| $row | ${RESULTS[$row]} |"
done
