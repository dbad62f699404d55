#!/usr/bin/env bash
# bench/edge_spool_commit.sh — what group commit buys: events/s accepted by ta-edge and
# fsyncs per event, per fsync policy and number of concurrent clients.
#
#   cargo build --release -p ta-edge && bench/edge_spool_commit.sh [seconds per run, default 10]
#
# Needs wrk (Debian package). Kafka is pointed at a closed port so only the accept path
# (auth, validation, enrichment, spool append) is measured; the forwarder just retries.
# wrk runs on the same machine: numbers are for comparing rows, not absolute capacity.
set -euo pipefail

SECONDS_PER_RUN=${1:-10}
source "$(dirname -- "${BASH_SOURCE[0]}")/wrk-common.sh"
BIN=${TA_EDGE_BIN:-$REPO_ROOT/target/release/ta-edge}
[[ -x $BIN ]] || { echo "build first: cargo build --release -p ta-edge" >&2; exit 1; }

# Sum over every label set (ta_edge_events_accepted_total has one series per site).
metric() { awk -v name="$1" '$1 ~ "^"name"({|$)" {s += $2; n++} END {if (n) print s}' "$WORK/metrics"; }

run() { # fsync clients
    local fsync=$1 clients=$2 port spool
    local ops
    port=$(free_port)
    ops=$(free_port)
    spool="$WORK/spool-$fsync-$clients"
    start_edge "$BIN" "$port" "$ops" "$spool" TA_SPOOL_FSYNC="$fsync"
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
    wrk -t$((clients < 2 ? 1 : 2)) -c"$clients" -d"${SECONDS_PER_RUN}s" -s "$WORK/collect.lua" \
        "http://127.0.0.1:$port/v1/collect" >"$WORK/wrk.txt"
    curl -s "http://127.0.0.1:$ops/metrics" >"$WORK/metrics"
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
    local accepted fsyncs fsync_sum rps p_lat non2xx
    accepted=$(metric ta_edge_events_accepted_total)
    fsyncs=$(metric ta_edge_spool_fsync_duration_seconds_count)
    fsync_sum=$(metric ta_edge_spool_fsync_duration_seconds_sum)
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    p_lat=$(awk '/Latency/ {print $2}' "$WORK/wrk.txt")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
    awk -v f="$fsync" -v c="$clients" -v r="$rps" -v a="${accepted:-0}" -v n="${fsyncs:-0}" \
        -v s="${fsync_sum:-0}" -v l="$p_lat" -v e="${non2xx:-0}" 'BEGIN {
        printf "%-9s %7d %10.0f %10d %12.3f %14.3f %11s %7s\n", f, c, r, a,
            (a ? n / a : 0), (n ? 1000 * s / n : 0), l, e }'
    rm -rf "$spool"
}

printf "%-9s %7s %10s %10s %12s %14s %11s %7s\n" fsync clients "req/s" accepted \
    "fsync/event" "ms per fsync" "mean lat" "non-2xx"
for fsync in always never; do
    for clients in 1 32 128; do
        run "$fsync" "$clients"
    done
done
