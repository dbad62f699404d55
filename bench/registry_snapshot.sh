#!/usr/bin/env bash
# The registry at scale, measured with curl: creating N sites through the admin API (one
# request each), then the signed snapshot edges poll (size, time per request) against
# /healthz on the same ta-query as the baseline of an answer that does no work.
#
#   cargo build --release -p ta-central && bench/registry_snapshot.sh [SITES] [RUNS]
#
# Needs no ClickHouse (the admin API and the snapshot read the registry only). Prints a table.
set -euo pipefail
sites=${1:-1000}
runs=${2:-21}
bin=${TA_QUERY_BIN:-target/release/ta-query}
[ -x "$bin" ] || { echo "build it first: cargo build --release -p ta-central" >&2; exit 2; }
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
export TA_QUERY_REGISTRY=$dir/registry.db TA_QUERY_REGISTRY_SIGNING_KEY=$dir/signing.pk8
"$bin" admin keygen --out "$dir/signing.pk8" > /dev/null
admin=$("$bin" admin create-credential --kind admin --label bench 2> /dev/null)
edge=$("$bin" admin create-credential --kind edge --label bench 2> /dev/null)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TA_QUERY_LISTEN=127.0.0.1:$port TA_QUERY_CREDENTIAL_RATE_LIMIT=0 TA_QUERY_CREDENTIAL_MAX_IN_FLIGHT=0 \
  TA_LOG=warn "$bin" > "$dir/query.log" 2>&1 &
pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$base/healthz" > /dev/null && break; sleep 0.1; done

start=$(date +%s.%N)
for i in $(seq "$sites"); do
  [ $((i % 200)) -eq 0 ] && echo "  $i/$sites sites created" >&2
  curl -sf -o /dev/null -H "Authorization: Bearer $admin" \
    -d "{\"id\":\"bench-$i\",\"allowed_origins\":[\"https://bench-$i.example\"],\"hmac_secret\":true}" \
    "$base/v1/admin/sites"
done
end=$(date +%s.%N)

# median of `runs` curl timings (ms) of URL with optional bearer
median() {
  local url=$1 token=${2:-}
  for _ in $(seq "$runs"); do
    if [ -n "$token" ]; then
      curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "$url"
    else
      curl -s -o /dev/null -w '%{time_total}\n' "$url"
    fi
  done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}'
}
bytes=$(curl -s -H "Authorization: Bearer $edge" "$base/v1/registry/snapshot" | wc -c)
snap=$(median "$base/v1/registry/snapshot" "$edge")
list=$(median "$base/v1/admin/sites" "$admin")
health=$(median "$base/healthz")
printf '\n| %s sites | value |\n|---|---:|\n' "$sites"
printf '| admin API: site creations/s (sequential curl, each a transaction with fsync) | %.0f |\n' \
  "$(python3 -c "print($sites / ($end - $start))")"
printf '| signed snapshot size | %s KiB |\n' "$((bytes / 1024))"
printf '| GET /v1/registry/snapshot, curl median of %s | %s ms |\n' "$runs" "$snap"
printf '| GET /v1/admin/sites, curl median of %s | %s ms |\n' "$runs" "$list"
printf '| GET /healthz (baseline), curl median of %s | %s ms |\n' "$runs" "$health"
