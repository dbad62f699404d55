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
REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
BIN_DIR=${TA_BIN_DIR:-$REPO_ROOT/target/release}
for bin in ta-edge ta-bench; do
    [[ -x $BIN_DIR/$bin ]] || { echo "build first: cargo build --release --bins ($BIN_DIR/$bin missing)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
PID=
cleanup() {
    [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/collect.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-TA-API-Key"] = "dev-key-site-1"
wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
wrk.body = '{"site_id":"site-1","event_name":"pageview","url":"https://example.com/pricing?utm_source=news","referrer":"https://www.google.com/"}'
LUA

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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

start_edge() { # binary port
    TA_DEV=true TA_EDGE_LISTEN="127.0.0.1:$2" TA_EDGE_METRICS_LISTEN="127.0.0.1:$(free_port)" \
        TA_SITES_FILE="$REPO_ROOT/deploy/config/sites.dev.toml" \
        TA_KAFKA_BROKERS="127.0.0.1:$(free_port)" TA_SPOOL_DIR="$WORK/spool-$2" \
        TA_ADDRESS_RATE_LIMIT=1000000000 TA_KEY_RATE_LIMIT=1000000000 TA_SITE_RATE_LIMIT=1000000000 \
        TA_SHUTDOWN_DRAIN_SECS=0 TA_LOG=error "$1" >"$WORK/edge.log" 2>&1 &
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
        "ta-edge") start_edge "$BIN_DIR/ta-edge" "$port" ;;
        "ta-edge (old)") start_edge "$TA_EDGE_OLD_BIN" "$port" ;;
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
