#!/usr/bin/env bash
# What the bus between shards costs: chat (one line a second each) for N players, 20 s, against
#   1. one process without --bus (today's server),
#   2. one process with --bus (the bus's own work, nothing crossing),
#   3. two shards with --bus on one database, the players split between them (every line crosses).
# Each process's CPU (and Redis's, and PostgreSQL's) is read from /proc over 15 s of the chat phase
# (once every player is logged in: the logins' argon2 would swamp it).
# With a third argument, `redis-restart`, only run 3 happens, and Redis is stopped 5 s into the sampled
# 15 s and started again 3 s later: what players on two shards see while the bus restarts under load.
# Usage: scripts/shards-bench.sh [CLIENTS] [sqlite|postgres] [redis-restart]   (default 200 sqlite).
# Needs redis-server, and for postgres the postgresql package (scripts/services.sh installs both): a
# throwaway cluster on loopback, a new database per run, as the shards on several machines would share it.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-200}
backend=${2:-sqlite}
restart_redis=${3:-}
bash scripts/services.sh install redis
features=()
if [ "$backend" = postgres ]; then
    bash scripts/services.sh install postgres
    features=(--features mmo/postgres)
fi
cargo build --release -p mmo -p mmo-loadgen "${features[@]}"
dir=$(mktemp -d)
trap 'pkill -P $$ || true; sleep 1; rm -rf "$dir"' EXIT
tck=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
redis_start() {
    redis-server --bind 127.0.0.1 --port 27379 --save '' --appendonly no > /dev/null &
    redis=$!
    sleep 0.5
}
redis_start
pg=""
if [ "$backend" = postgres ]; then
    source scripts/pg-cluster.sh
    pg_start "$dir" 27432
fi
flags=(--stats-interval 1 --max-clients 1024 --auth-queue 2048 --login-timeout 600 --chat-burst 1000
       --chat-per-second 1000)
run_number=0
run() {
    local name=$1 shards=$2; shift 2
    rm -f "$dir"/db.sqlite3*
    run_number=$((run_number + 1))
    local db="$dir/db.sqlite3"
    if [ -n "$pg" ]; then
        db="postgres://mmo@127.0.0.1:27432/run$run_number"
        pg_createdb "run$run_number"
    fi
    local pids=() addrs=()
    for i in $(seq 1 "$shards"); do
        local port=$((27400 + i))
        target/release/mmo --bind 127.0.0.1:$port "${flags[@]}" --db "$db" "$@" --shard "s$i" \
            2> "$dir/s$i.log" &
        pids+=($!)
        addrs+=(127.0.0.1:$port)
        sleep 0.5
    done
    local also=()
    for addr in "${addrs[@]:1}"; do also+=(--also-server "$addr"); done
    echo "== $name"
    target/release/mmo-loadgen chat --clients "$clients" --rate 1 --duration 20 \
        --server "${addrs[0]}" --server-pid "${pids[0]}" "${also[@]}" > "$dir/loadgen.out" &
    local loadgen=$!
    # Every shard reports its share of the players logged in, then 15 s are sampled.
    local share=$((clients / shards))
    for i in $(seq 1 600); do
        local ready=0
        for j in $(seq 1 "$shards"); do
            if sed 's/\x1b\[[0-9;]*m//g' "$dir/s$j.log" | grep -q "players=$share "; then ready=$((ready + 1)); fi
        done
        [ "$ready" = "$shards" ] && break
        sleep 0.2
    done
    sleep 1
    local before=() r0 p0=0
    for pid in "${pids[@]}"; do before+=($(ticks "$pid")); done
    r0=$(ticks $redis)
    if [ -n "$pg" ]; then p0=$(pg_ticks); fi
    if [ -n "$restart_redis" ]; then
        sleep 5
        kill $redis; wait $redis 2>/dev/null || true
        echo "redis stopped for 3 s"
        sleep 3
        redis_start
        sleep 6.5
    else
        sleep 15
    fi
    for i in "${!pids[@]}"; do
        awk -v a="${before[$i]}" -v b="$(ticks "${pids[$i]}")" -v t="$tck" -v n="s$((i + 1))" \
            'BEGIN {printf "%s cpu %.3f cores\n", n, (b - a) / t / 15}'
    done
    if [ -z "$restart_redis" ]; then
        awk -v a="$r0" -v b="$(ticks $redis)" -v t="$tck" 'BEGIN {printf "redis cpu %.3f cores\n", (b - a) / t / 15}'
    fi
    if [ -n "$pg" ]; then
        awk -v a="$p0" -v b="$(pg_ticks)" -v t="$tck" 'BEGIN {printf "postgres cpu %.3f cores\n", (b - a) / t / 15}'
    fi
    wait $loadgen || true
    sed -n 1,2p "$dir/loadgen.out"
    if [ -n "$restart_redis" ]; then
        # What each shard logged of the bus going away and coming back.
        for j in $(seq 1 "$shards"); do
            sed 's/\x1b\[[0-9;]*m//g' "$dir/s$j.log" | grep -E "bus|shard is gone" | grep -v "joining the bus" |
                sed "s/^/s$j: /"
        done
    fi
    kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
    echo
}
if [ -n "$restart_redis" ]; then
    run "two shards, --bus, Redis restarted" 2 --bus redis://127.0.0.1:27379
    exit
fi
run "one process" 1
run "one process, --bus" 1 --bus redis://127.0.0.1:27379
run "two shards, --bus" 2 --bus redis://127.0.0.1:27379
