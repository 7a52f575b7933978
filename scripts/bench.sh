#!/usr/bin/env bash
# Runs the BENCHMARKS.md sets against mmo (and the floor relay, in the same invocation).
# Usage: scripts/bench.sh [OUT_FILE] [capacity|token|abuse|world|all]   (default: all)
#   capacity: every scenario, mmo and floor (about 7 minutes on 2 cores)
#   token:    the capacity rows in token mode: HTTPS login, secure netcode, the floor secure too (7 minutes)
#   abuse:    50 players chatting beside each kind of abuse (about 5 minutes)
#   world:    players wandering (snapshot age, bytes per player), mmo and the all-to-all floor (4 minutes,
#             most of it the 1,000 logins)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}
set_name=${2:-all}
cargo build --release -p mmo -p mmo-loadgen
lg=target/release/mmo-loadgen
run() { echo "\$ mmo-loadgen $*"; "$lg" "$@" || true; echo; }
capacity() {
    run chat --clients 10 --rate 1 --duration 20 --floor
    run chat --clients 50 --rate 1 --duration 20 --floor
    run chat --clients 200 --rate 1 --duration 20 --floor
    run chat --clients 500 --rate 1 --duration 20 --floor
    run login-storm --clients 200 --rate 10 --floor
    run idle --clients 0 --duration 20 --floor
    run idle --clients 1000 --duration 20 --floor
}
token() {
    run chat --clients 10 --rate 1 --duration 20 --floor --auth token
    run chat --clients 50 --rate 1 --duration 20 --floor --auth token
    run chat --clients 200 --rate 1 --duration 20 --floor --auth token
    run login-storm --clients 200 --rate 10 --floor --auth token
    run idle --clients 0 --duration 20 --floor --auth token
    run idle --clients 1000 --duration 20 --floor --auth token
    run chat --clients 50 --rate 1 --duration 20 --auth token --abuse junk-many --abuse-rate 20000 --floor
}
abuse() {
    # The same 50 players, 1 line a second each, 20 s: first alone, then beside each abuse.
    local chat=(chat --clients 50 --rate 1 --duration 20)
    run "${chat[@]}" --abuse junk --abuse-rate 0
    run "${chat[@]}" --abuse junk --abuse-rate 20000 --floor
    run "${chat[@]}" --abuse junk-many --abuse-rate 20000 --floor
    run "${chat[@]}" --abuse packet-flood --abuse-rate 20000
    run "${chat[@]}" --abuse chat-flood --abuse-rate 1000
    run "${chat[@]}" --abuse guess --abuse-rate 100
    run "${chat[@]}" --abuse stall --abuse-rate 500
    run "${chat[@]}" --abuse garbage --abuse-rate 200
}
world() {
    run move --clients 100 --duration 20 --floor
    run move --clients 500 --duration 20 --floor
    run move --clients 1000 --duration 20 --floor
}
{
    case $set_name in
    capacity) capacity ;;
    token) token ;;
    abuse) abuse ;;
    world) world ;;
    *) capacity; token; abuse; world ;;
    esac
} >"$out" 2>&1
