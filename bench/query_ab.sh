#!/usr/bin/env bash
# bench/query_ab.sh — two ta-query builds side by side on the `ta-bench query` database: the
# slow rows of issues 17 and 18 (conversions, v2), the timeseries, plus the aggregate as a
# gauge, each request sent to the old and the new build in turn (so the machine's noise falls
# on both alike), with curl as the outside clock; both answers are compared (minus timing
# fields).
#
#   target/release/ta-bench query --reuse      # once: generates ta_bench_query_10000000
#   cp target/release/ta-query /tmp/ta-query-old; <change, cargo build --release -p ta-central>
#   bench/query_ab.sh /tmp/ta-query-old target/release/ta-query [runs per build, default 11]
#
# Both builds run uncached (every cache TTL 0), read-only against TA_CLICKHOUSE_URL
# (default the local infra's) and TA_BENCH_DATABASE (default ta_bench_query_10000000); the
# 30-day range ends yesterday (UTC), as in `ta-bench query`. Prints a markdown table of medians.
set -euo pipefail

OLD=${1:?usage: bench/query_ab.sh OLD_TA_QUERY NEW_TA_QUERY [runs]}
NEW=${2:?usage: bench/query_ab.sh OLD_TA_QUERY NEW_TA_QUERY [runs]}
RUNS=${3:-11}
# shellcheck source=bench/query-common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/query-common.sh"
TOKEN=dev-admin-token

OLD_PORT=$(start_uncached_query "$OLD" old)
NEW_PORT=$(start_uncached_query "$NEW" new)

R="site_id=site-1&period=30d&date=$END&timezone=UTC"
V="{\"site_id\":\"site-1\",\"date_range\":\"30d\",\"date\":\"$END\",\"timezone\":\"UTC\""
BY_COUNTRY='[["or",[["is","country",["DE","US"]],["contains","page",["/blog"]]]]]'
BY_PAGE='[["or",[["is","event_name",["signup"]],["contains","page",["/blog"]]]]]'
EVENT_METRICS='["visitors","pageviews","events"]'
VISIT_METRICS='["visitors","visits","bounce_rate","visit_duration"]'
v2() { echo "$V,\"metrics\":$1,\"dimensions\":$2,\"filters\":$3}"; }
ROWS=(
    "aggregate+compare (gauge)|/v1/stats/aggregate?$R&compare=previous_period|"
    "timeseries by day + compare|/v1/stats/timeseries?$R&interval=day&compare=previous_period|"
    "goals (6, with revenue)|/v1/stats/goals?$R|"
    "goal signup by source|/v1/stats/goals?$R&goal=signup&property=source|"
    "revenue (purchase) by source|/v1/stats/goals?$R&goal=purchase&property=source|"
    "goal blog by page|/v1/stats/goals?$R&goal=blog&property=page|"
    "funnel, 4 steps, per visit|/v1/stats/funnel?$R&funnel=four-steps|"
    "funnel, 4 steps, per day|/v1/stats/funnel?$R&funnel=four-steps&within=day|"
    "v2 source × day, OR country|/v2/query|$(v2 "$EVENT_METRICS" '["source","time:day"]' "$BY_COUNTRY")"
    "v2 page × device, OR country|/v2/query|$(v2 "$EVENT_METRICS" '["page","device"]' "$BY_COUNTRY")"
    "v2 entry × source, visits, OR country|/v2/query|$(v2 "$VISIT_METRICS" '["entry_page","source"]' "$BY_COUNTRY")"
    "v2 source × day, OR page|/v2/query|$(v2 "$EVENT_METRICS" '["source","time:day"]' "$BY_PAGE")"
    "v2 page × event, OR page|/v2/query|$(v2 "$EVENT_METRICS" '["page","event_name"]' "$BY_PAGE")"
    "v2 entry × source, visits, OR page|/v2/query|$(v2 "$VISIT_METRICS" '["entry_page","source"]' "$BY_PAGE")"
)

# One request; prints its seconds, fails on anything but 200.
request() {
    local port=$1 path=$2 body=$3 out=$4 status
    if [[ -z $body ]]; then
        status=$(curl -s -o "$out" -w '%{http_code} %{time_total}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port$path")
    else
        status=$(curl -s -o "$out" -w '%{http_code} %{time_total}' -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' "http://127.0.0.1:$port$path" -d "$body")
    fi
    [[ ${status%% *} == 200 ]] || { echo "$path answered ${status%% *}: $(head -c 300 "$out")" >&2; exit 1; }
    echo "${status#* }"
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "ta-query A/B on $DATABASE, 30 days to $END, $RUNS alternated requests per build, curl medians ($(date -u +%FT%TZ), load average $(cut -d' ' -f1 /proc/loadavg))"
echo
echo "| endpoint | old p50 ms | new p50 ms | new / old | same answer |"
echo "|---|---:|---:|---:|---|"
for row in "${ROWS[@]}"; do
    IFS='|' read -r name path body <<<"$row"
    request "$OLD_PORT" "$path" "$body" "$WORK/old.json" >/dev/null
    request "$NEW_PORT" "$path" "$body" "$WORK/new.json" >/dev/null
    same=$(python3 - "$WORK/old.json" "$WORK/new.json" <<'EOF'
import json, sys
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in ("took_ms", "computed_at")}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
print("yes" if a == b else "NO")
EOF
)
    : >"$WORK/old.t"
    : >"$WORK/new.t"
    for _ in $(seq "$RUNS"); do
        request "$OLD_PORT" "$path" "$body" "$WORK/o" >>"$WORK/old.t"
        request "$NEW_PORT" "$path" "$body" "$WORK/n" >>"$WORK/new.t"
    done
    old=$(median <"$WORK/old.t")
    new=$(median <"$WORK/new.t")
    python3 -c "print('| $name | %.0f | %.0f | %.2f | $same |' % ($old * 1000, $new * 1000, $new / $old))"
done
