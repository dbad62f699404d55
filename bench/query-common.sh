# bench/query-common.sh — what the ta-query scripts beside it share (sourced, not run): the
# benchmark database and range, a work directory removed on exit with every ta-query it
# started, a free port, and a ta-query started uncached (every cache TTL 0) on that database.
#
# Sets REPO_ROOT, CLICKHOUSE, DATABASE, END (yesterday, UTC: the 30-day range `ta-bench
# query` reads), WORK; defines free_port, start_uncached_query.

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
CLICKHOUSE=${TA_CLICKHOUSE_URL:-http://127.0.0.1:8123}
DATABASE=${TA_BENCH_DATABASE:-ta_bench_query_10000000}
END=$(date -u -d yesterday +%F)
WORK=$(mktemp -d)
cleanup() {
    local f
    for f in "$WORK"/*.pid; do
        [[ -e $f ]] && kill "$(cat "$f")" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_uncached_query BINARY NAME: prints the port once `/healthz` answers (its log and pid
# are $WORK/NAME.log and .pid, the pid in a file so that a caller's `$( )` keeps it for
# cleanup); exits with the log if it never does.
start_uncached_query() {
    local port
    port=$(free_port)
    TA_QUERY_LISTEN=127.0.0.1:$port TA_DEV=true TA_CLICKHOUSE_URL=$CLICKHOUSE \
        TA_CLICKHOUSE_DATABASE=$DATABASE TA_QUERY_ACCESS_FILE=$REPO_ROOT/deploy/config/access.dev.toml \
        TA_QUERY_CREDENTIAL_RATE_LIMIT=0 TA_QUERY_CREDENTIAL_MAX_IN_FLIGHT=0 TA_LOG=warn \
        TA_QUERY_CACHE_RECENT_TTL_MS=0 TA_QUERY_CACHE_SETTLING_TTL_SECS=0 \
        TA_QUERY_CACHE_PAST_TTL_SECS=0 TA_QUERY_CACHE_REALTIME_TTL_MS=0 \
        "$1" >"$WORK/$2.log" 2>&1 &
    echo $! >"$WORK/$2.pid"
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { echo "$port"; return; }
        sleep 0.1
    done
    echo "$1 did not start: $(cat "$WORK/$2.log")" >&2
    exit 1
}
