#!/usr/bin/env bash
# The chaos soak: N players (300 by default) on three shards in token mode, over one PostgreSQL and one
# Redis, chat, whisper and walk for MINUTES (10 by default) while a driver, every 5-15 s, takes one part
# down and brings it back, in a shuffled round of: a shard killed (SIGKILL), a shard stopped (SIGTERM),
# a shard frozen (SIGSTOP) for 8-12 s (past the 6 s presence expiry), Redis killed and restarted with
# its data (append-only file, fsync on every write), Redis killed and restarted empty, PostgreSQL
# killed. Each stays down 2-6 s; the first is always a frozen shard. Players reconnect by themselves over
# any shard's HTTPS endpoint.
# The driver starts nothing in the last 30 s of play, so everything runs again before the players stop.
# Then `mmo-loadgen soak` checks from the players' own logs, the driver's and the shards' logs: every
# acknowledged line reached every player in play on a live shard while it crossed (or the player was
# told lines may be missing), every player that lost its shard was back in play within 10 s, no account
# was in play on two shards at once; and this script checks every acknowledged line is in the database.
# Usage: scripts/chaos.sh [N] [MINUTES] [SEED]
# Env: MMO_BIN and LOADGEN_BIN to use those binaries (mmo built with --features postgres) instead of
# building release ones; CHAOS_PORT, the first of the 40 loopback ports it uses (27700); CHAOS_DIR to
# keep the logs there. Needs redis-server and PostgreSQL (scripts/services.sh installs them) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-300}
minutes=${2:-10}
seed=${3:-$$}
RANDOM=$seed
bash scripts/services.sh install redis
bash scripts/services.sh install postgres
if [ -z "${MMO_BIN:-}" ]; then
    cargo build --release -p mmo -p mmo-loadgen --features mmo/postgres
    MMO_BIN=$PWD/target/release/mmo
    LOADGEN_BIN=$PWD/target/release/mmo-loadgen
fi
base=${CHAOS_PORT:-27700}
if [ -n "${CHAOS_DIR:-}" ]; then dir=$CHAOS_DIR; mkdir -p "$dir"; else dir=$(mktemp -d); fi
cleanup() {
    kill -CONT "${shards[@]}" 2>/dev/null || true
    pkill -P $$ || true
    sleep 1
    if [ -z "${CHAOS_DIR:-}" ]; then rm -rf "$dir"; fi
}
shards=()
trap cleanup EXIT
now_ms() { date +%s%3N; }
log() { echo "$(now_ms) $1 $2" >> "$dir/outages.log"; echo "[$(date +%T)] $1 $2"; }
pause() { sleep "$(awk -v a="$1" -v b="$2" -v r="$RANDOM" 'BEGIN {printf "%.1f", a + (b - a) * r / 32767}')"; }

source scripts/pg-cluster.sh
pg_start "$dir" $((base + 30))
pg_createdb chaos
db="postgres://mmo@127.0.0.1:$((base + 30))/chaos"

redis_port=$((base + 31))
mkdir -p "$dir/redis"
redis_start() {
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" --save '' \
        --appendonly yes --appendfsync always >> "$dir/redis.log" &
    redis=$!
    for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && return; sleep 0.1; done
}
redis_start

head -c 32 /dev/urandom > "$dir/netcode.key"
udp() { echo "127.0.0.1:$((base + $1))"; }
https() { echo "127.0.0.1:$((base + 10 + $1))"; }
shard_start() {
    local i=$1
    # From the run's directory: the first shard makes the self-signed certificate there, the others
    # (and every restart) use it.
    (cd "$dir" && exec "$MMO_BIN" --auth token --bind "$(udp "$i")" --http-bind "$(https "$i")" \
        --db "$db" --bus "redis://127.0.0.1:$redis_port" --shard "s$i" --netcode-key-file netcode.key \
        --log-format json --logins-per-minute 100000 --registrations-per-minute 100000 \
        2>> "$dir/s$i.log") &
    shards[i]=$!
    for _ in $(seq 1 100); do
        curl -sk -o /dev/null "https://$(https "$i")/healthz" && return
        sleep 0.1
    done
    echo "shard s$i did not start" >&2
    exit 1
}
for i in 1 2 3; do shard_start "$i"; done

urls=() logs=()
for i in 1 2 3; do
    urls+=(--login-url "https://$(https "$i")")
    logs+=(--shard-log "$(udp "$i")=$dir/s$i.log")
done
: > "$dir/outages.log"
echo "== chaos: $clients players, $minutes min, seed $seed, logs in $dir"
"$LOADGEN_BIN" soak --clients "$clients" --duration $((minutes * 60)) "${urls[@]}" \
    --ca-cert "$dir/mmo-cert.pem" --outages "$dir/outages.log" "${logs[@]}" \
    --acknowledged "$dir/acknowledged.txt" > "$dir/soak.out" 2> "$dir/soak.err" &
soak=$!
for _ in $(seq 1 6000); do
    grep -q "players in play" "$dir/soak.err" 2>/dev/null && break
    kill -0 $soak 2>/dev/null || { cat "$dir/soak.err" >&2; exit 1; }
    sleep 0.1
done
chaos_end=$(($(date +%s) + minutes * 60 - 30))

actions=(kill term stop redis-keep redis-lose postgres)
# The first outage is a frozen shard, the one its players can only notice by its silence (so that even
# the one-minute run has it), then shuffled rounds of all six.
round=(stop)
while true; do
    pause 5 15
    [ "$(date +%s)" -lt "$chaos_end" ] || break
    if [ ${#round[@]} = 0 ]; then
        round=($(printf '%s\n' "${actions[@]}" | awk -v s="$RANDOM" 'BEGIN {srand(s)} {print rand() "\t" $0}' |
            sort -n | cut -f2))
    fi
    action=${round[0]}
    round=("${round[@]:1}")
    i=$((RANDOM % 3 + 1))
    case $action in
        kill | term)
            signal=$([ "$action" = kill ] && echo KILL || echo TERM)
            log "$action" "$(udp "$i")"
            kill -s "$signal" "${shards[i]}"
            wait "${shards[i]}" 2>/dev/null || true
            pause 2 6
            shard_start "$i"
            log start "$(udp "$i")"
            ;;
        stop)
            log stop "$(udp "$i")"
            kill -STOP "${shards[i]}"
            pause 8 12
            kill -CONT "${shards[i]}"
            log cont "$(udp "$i")"
            ;;
        redis-keep | redis-lose)
            if [ "$action" = redis-lose ]; then log wipe redis; else log kill redis; fi
            kill -9 $redis
            wait $redis 2>/dev/null || true
            if [ "$action" = redis-lose ]; then rm -rf "${dir:?}"/redis/*; fi
            pause 2 6
            redis_start
            log start redis
            ;;
        postgres)
            log kill postgres
            kill -9 "$pg"
            wait "$pg" 2>/dev/null || true
            pause 2 6
            pg_restart "$dir"
            log start postgres
            ;;
    esac
done

status=0
wait $soak || status=$?
cat "$dir/soak.out"
# What the shards still had queued is written by now (the players listened 10 s after the chat).
"$pg_bin/psql" -qtA "$db" -c 'SELECT body FROM chat_messages' | awk '{print $NF}' | sort -u > "$dir/stored.txt"
sort -u "$dir/acknowledged.txt" > "$dir/acknowledged.sorted"
missing=$(comm -23 "$dir/acknowledged.sorted" "$dir/stored.txt" | wc -l)
echo "database: $(wc -l < "$dir/stored.txt") lines stored; acknowledged lines missing from it: $missing"
if [ "$missing" != 0 ]; then
    echo "  e.g. line $(comm -23 "$dir/acknowledged.sorted" "$dir/stored.txt" | head -3 | tr '\n' ' ')"
    status=1
fi
for i in 1 2 3; do kill -TERM "${shards[i]}" 2>/dev/null || true; done
wait "${shards[@]}" 2>/dev/null || true
if [ "$status" = 0 ]; then echo "chaos: passed"; else echo "chaos: FAILED"; fi
exit "$status"
