#!/usr/bin/env bash
# What metrics cost: chat 200 (one line a second each, 20 s) against the release server three ways:
# without --metrics-bind, with it but nobody scraping, and with curl scraping /metrics once a second.
# The server runs with the load generator's own flags; every run on a fresh database.
# Usage: scripts/metrics-cost.sh [CLIENTS] [SECONDS]   (defaults 200, 20)
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-200}
seconds=${2:-20}
cargo build --release -p mmo -p mmo-loadgen
dir=$(mktemp -d)
trap 'pkill -P $$ || true; rm -rf "$dir"' EXIT
port=27100
metrics=127.0.0.1:9184
run() {
    local name=$1; shift
    rm -f "$dir"/db.sqlite3*
    target/release/mmo --bind 127.0.0.1:$port --db "$dir/db.sqlite3" --stats-interval 1 --max-clients 1024 \
        --auth-queue 2048 --login-timeout 600 --chat-burst 1000 --chat-per-second 1000 "$@" 2> "$dir/server.log" &
    local pid=$!
    sleep 1
    local scraper=
    if [ "$name" = scraped ]; then
        ( while kill -0 $pid 2>/dev/null; do curl -s -o /dev/null "http://$metrics/metrics"; sleep 1; done ) &
        scraper=$!
    fi
    echo "== $name: mmo $*"
    target/release/mmo-loadgen chat --clients "$clients" --rate 1 --duration "$seconds" \
        --server 127.0.0.1:$port --server-pid $pid | sed -n 1,4p
    [ -n "$scraper" ] && kill $scraper 2>/dev/null || true
    if [ "$name" = scraped ]; then
        echo "scrape: $(curl -s "http://$metrics/metrics" | wc -c) bytes; a scrape takes $(curl -s -o /dev/null -w '%{time_total}' "http://$metrics/metrics") s"
    fi
    kill $pid; wait $pid 2>/dev/null || true
    sed 's/\x1b\[[0-9;]*m//g' "$dir/server.log" | grep "tick stats" | grep "players=$clients " \
        | sed -E 's/.*p99_us=([0-9]+).*/\1/' | sort -n \
        | awk '{v[NR]=$1} END {if (NR) printf "tick p99 per second (ms): median %.2f, max %.2f, %d seconds\n", v[int((NR+1)/2)]/1000, v[NR]/1000, NR}'
    port=$((port + 1))
    echo
}
run off
run on --metrics-bind $metrics
run scraped --metrics-bind $metrics
