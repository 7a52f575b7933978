#!/usr/bin/env bash
# What the account database costs under play, SQLite beside PostgreSQL: one server, N players walking
# (`mmo-loadgen move`: every walker's position saved every 2 s, in one batch per save) and then N
# chatting (one line a second each: every line stored, in batches). The server's CPU comes from the load
# generator, PostgreSQL's (the postmaster and its children: the server's pooled connections) from /proc
# over the measured run. PostgreSQL is a throwaway cluster on loopback (fsync off: a benchmark).
# Usage: scripts/db-bench.sh [CLIENTS]   (default 500). Needs the postgresql package
# (scripts/services.sh install postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-500}
bash scripts/services.sh install postgres
cargo build --release -p mmo -p mmo-loadgen --features mmo/postgres
dir=$(mktemp -d)
trap 'pkill -P $$ || true; sleep 1; rm -rf "$dir"' EXIT
tck=$(getconf CLK_TCK)

source scripts/pg-cluster.sh
pg_start "$dir" 27433

run_number=0
run() {
    local scenario=$1 backend=$2
    run_number=$((run_number + 1))
    local db="$dir/run$run_number.sqlite3"
    if [ "$backend" = postgres ]; then
        db="postgres://mmo@127.0.0.1:27433/run$run_number"
        pg_createdb "run$run_number"
    fi
    local port=$((27500 + run_number))
    target/release/mmo --bind 127.0.0.1:$port --db "$db" --stats-interval 1 --max-clients 1024 \
        --auth-queue 2048 --login-timeout 600 --chat-burst 1000 --chat-per-second 1000 \
        2> "$dir/server$run_number.log" &
    local server=$!
    sleep 1
    target/release/mmo-loadgen "$scenario" --clients "$clients" --duration 20 \
        --server 127.0.0.1:$port --server-pid $server > "$dir/loadgen.out" &
    local loadgen=$!
    # Once every player is in (argon2 would swamp the figures), 15 s are sampled.
    for i in $(seq 1 600); do
        if sed 's/\x1b\[[0-9;]*m//g' "$dir/server$run_number.log" | grep -q "players=$clients "; then break; fi
        sleep 0.2
    done
    sleep 1
    local p0
    p0=$(pg_ticks)
    sleep 15
    echo "== $scenario $clients on $backend"
    awk -v a="$p0" -v b="$(pg_ticks)" -v t="$tck" 'BEGIN {printf "postgres cpu %.3f cores\n", (b - a) / t / 15}'
    wait $loadgen || true
    sed -n 1,2p "$dir/loadgen.out"
    kill $server; wait $server 2>/dev/null || true
    echo
}
for scenario in move chat; do
    run "$scenario" sqlite
    run "$scenario" postgres
done
