#!/usr/bin/env bash
# What a long PostgreSQL outage costs one server under chat: N players (200 by default), one line a second
# each, against a server on a throwaway PostgreSQL cluster; 30 s into the chat PostgreSQL is killed
# (SIGKILL: connections reset) for OUTAGE seconds (300 by default), then started again on the same data,
# and the chat goes on for 60 s more. Every 5 s it prints the server's RSS and what waits in its queues
# (`mmo_queue_depth`), and the lines refused meanwhile (`mmo_chat_paused_total`); at the end the load
# generator's book of every line: acknowledged lines and their deliveries missing (`--per-line`), and
# the lines stored in the database against those acknowledged.
# Usage: scripts/outage-bench.sh [CLIENTS] [OUTAGE_SECONDS] [CHAT_QUEUE]   (default 200 300 50000)
# Needs the postgresql package (scripts/services.sh installs it) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-200}
outage=${2:-300}
chat_queue=${3:-50000}
bash scripts/services.sh install postgres
cargo build --release -p mmo -p mmo-loadgen --features mmo/postgres
dir=$(mktemp -d)
trap 'pkill -P $$ || true; sleep 1; rm -rf "$dir"' EXIT
source scripts/pg-cluster.sh
pg_start "$dir" 27532
pg_createdb outage
db="postgres://mmo@127.0.0.1:27532/outage"
target/release/mmo --bind 127.0.0.1:27501 --db "$db" --metrics-bind 127.0.0.1:27502 \
    --max-clients 1024 --auth-queue 2048 --login-timeout 600 --chat-burst 1000 --chat-per-second 1000 \
    --chat-queue "$chat_queue" --stats-interval 1 2> "$dir/mmo.log" &
mmo=$!
sleep 1
duration=$((30 + outage + 60))
target/release/mmo-loadgen chat --clients "$clients" --rate 1 --duration "$duration" --per-line \
    --server 127.0.0.1:27501 --server-pid "$mmo" > "$dir/loadgen.out" &
loadgen=$!
# Once every player is in, the chat runs.
for _ in $(seq 1 3000); do
    if sed 's/\x1b\[[0-9;]*m//g' "$dir/mmo.log" | grep -q "players=$clients "; then break; fi
    sleep 0.2
done
metric() { curl -s http://127.0.0.1:27502/metrics | awk -v m="$1" '$1 == m {print $2}'; }
sample() {
    printf '%6s s  rss %6.1f MB  chat queue %6s  world queue %s  paused %s\n' "$1" \
        "$(awk '/VmRSS/ {print $2 / 1024}' /proc/$mmo/status)" \
        "$(metric 'mmo_queue_depth{queue="chat"}')" "$(metric 'mmo_queue_depth{queue="world"}')" \
        "$(metric mmo_chat_paused_total)"
}
peak_rss() { awk '/VmHWM/ {printf "%.1f MB", $2 / 1024}' /proc/$mmo/status; }
echo "== chat $clients, PostgreSQL away for $outage s (--chat-queue $chat_queue)"
t=0
while [ $t -lt 30 ]; do sample $t; sleep 5; t=$((t + 5)); done
kill -9 "$pg"; wait "$pg" 2>/dev/null || true
echo "postgres killed"
while [ $t -lt $((30 + outage)) ]; do sample $t; sleep 5; t=$((t + 5)); done
pg_restart "$dir"
echo "postgres back"
while [ $t -lt "$duration" ]; do sample $t; sleep 5; t=$((t + 5)); done
wait $loadgen || true
sample end
echo "peak rss $(peak_rss)"
sed -n 1,2p "$dir/loadgen.out"
grep '^{' "$dir/loadgen.out" | tr ',' '\n' | grep -E '"(sent|acknowledged|acknowledged_lost|p99_ms)"'
sleep 3
echo "lines stored: $("$pg_bin/psql" -qtA "$db" -c 'SELECT count(*) FROM chat_messages')"
