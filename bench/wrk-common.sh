# bench/wrk-common.sh — what the wrk scripts beside it share (sourced, not run): a work
# directory removed on exit with the server it started, wrk's single-event POST, a free port,
# and a release ta-edge started for the accept path only (Kafka at a closed port, limits lifted
# for the one load-generator address, the dev sites file).
#
# Sets REPO_ROOT, WORK, PID (the server to kill on exit); defines free_port, start_edge.

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
PID=
cleanup() {
    [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# One Chrome pageview with a campaign tag and a referrer, as the tracker sends it.
cat >"$WORK/collect.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-TA-API-Key"] = "dev-key-site-1"
wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
wrk.body = '{"site_id":"site-1","event_name":"pageview","url":"https://example.com/pricing?utm_source=news","referrer":"https://www.google.com/"}'
LUA

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_edge BINARY PORT OPS_PORT SPOOL_DIR [VAR=value...]: ta-edge in the background (PID).
start_edge() {
    local bin=$1 port=$2 ops=$3 spool=$4
    shift 4
    env TA_DEV=true TA_EDGE_LISTEN="127.0.0.1:$port" TA_EDGE_METRICS_LISTEN="127.0.0.1:$ops" \
        TA_SITES_FILE="$REPO_ROOT/deploy/config/sites.dev.toml" \
        TA_KAFKA_BROKERS="127.0.0.1:$(free_port)" TA_SPOOL_DIR="$spool" \
        TA_ADDRESS_RATE_LIMIT=1000000000 TA_KEY_RATE_LIMIT=1000000000 TA_SITE_RATE_LIMIT=1000000000 \
        TA_SHUTDOWN_DRAIN_SECS=0 TA_LOG=error "$@" "$bin" >"$WORK/edge.log" 2>&1 &
    PID=$!
}
