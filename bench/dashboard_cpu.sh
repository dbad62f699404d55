#!/usr/bin/env bash
# bench/dashboard_cpu.sh — where the dashboard's first load spends ClickHouse's CPU: each of
# the requests the dashboard sends for its 30-day view (site-1, comparisons on, UTC), sent
# alone RUNS times to an uncached ta-query, with the local ClickHouse server's CPU time (from
# /proc, user + system) and curl's wall time per request; then the whole first load as the
# dashboard sends it (the main view's ten requests together, then the goal definitions, then
# goals, funnel and property keys together, then a key's values), RUNS times, with its wall
# time and ClickHouse CPU. Two cores can do no better than that CPU / 2.
#
#   target/release/ta-bench query --reuse      # once: generates ta_bench_query_10000000
#   bench/dashboard_cpu.sh [ta-query binary, default target/release/ta-query] [runs, default 10]
#
# Needs the local infra (`deploy/local/infra up`): its ClickHouse pid file is read. Nothing
# else should run on ClickHouse meanwhile (the CPU is the whole server's).
set -euo pipefail

# shellcheck source=bench/query-common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/query-common.sh"
BIN=${1:-$REPO_ROOT/target/release/ta-query}
RUNS=${2:-10}
CH_PID=$(cat "$REPO_ROOT/.data/clickhouse.pid")
[[ -r /proc/$CH_PID/stat ]] || { echo "ClickHouse (pid $CH_PID) is not running: deploy/local/infra up" >&2; exit 1; }
TICK=$(getconf CLK_TCK)
PORT=$(start_uncached_query "$BIN" ta-query)

ch_ms() { awk -v t="$TICK" '{print int(($14 + $15) * 1000 / t)}' "/proc/$CH_PID/stat"; }
now_ms() { date +%s%3N; }
get() {
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer dev-admin-token' "http://127.0.0.1:$PORT/v1/$1")
    [[ $status == 200 ]] || { echo "/v1/$1 answered $status" >&2; exit 1; }
}

R="site_id=site-1&period=30d&date=$END&timezone=UTC"
C="$R&compare=previous_period"
MAIN=("stats/aggregate?$C" "stats/timeseries?$C&interval=day")
for p in page entry_page source utm_campaign country device browser os; do
    MAIN+=("stats/breakdown?$C&property=$p&limit=10")
done
CONVERSIONS=("stats/goals?$R" "stats/funnel?$R&funnel=four-steps&within=visit" "stats/properties?$R&limit=50")
VALUES="stats/breakdown?$R&property=prop.plan&limit=10"

echo "ClickHouse CPU per dashboard request on $DATABASE, 30 days to $END, $RUNS sequential requests each ($(date -u +%FT%TZ), load average $(cut -d' ' -f1 /proc/loadavg))"
echo
echo "| request | ClickHouse CPU ms | wall ms |"
echo "|---|---:|---:|"
total=0
for p in "${MAIN[@]}" "${CONVERSIONS[@]}" "$VALUES"; do
    get "$p"
    c0=$(ch_ms); t0=$(now_ms)
    for _ in $(seq "$RUNS"); do get "$p"; done
    c1=$(ch_ms); t1=$(now_ms)
    cpu=$(((c1 - c0) / RUNS))
    total=$((total + cpu))
    echo "| ${p%%\?*} $(grep -o 'property=[a-z_.]*' <<<"$p" || true) | $cpu | $(((t1 - t0) / RUNS)) |"
done
echo "| sum (each request alone; a first load shares its coverage checks) | $total | |"
echo
echo "| first load as the dashboard sends it | wall ms | ClickHouse CPU ms |"
echo "|---|---:|---:|"
# Requests together; fails if any failed (a bare `wait` would also wait for ta-query).
together() {
    local pids=() p
    for p in "$@"; do
        get "$p" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
}
for i in $(seq "$RUNS"); do
    c0=$(ch_ms); t0=$(now_ms)
    together "${MAIN[@]}"
    get "goals?site_id=site-1"
    together "${CONVERSIONS[@]}"
    get "$VALUES"
    c1=$(ch_ms); t1=$(now_ms)
    echo "| run $i | $((t1 - t0)) | $((c1 - c0)) |"
done
