#!/usr/bin/env bash
# Runs the BENCHMARKS.md sets against mmo (and the floor relay, in the same invocation).
# Usage: scripts/bench.sh [OUT_FILE] [capacity|token|abuse|world|ws|npcs|scale|all]   (default: all)
#   capacity: every scenario, mmo and floor (about 7 minutes on 2 cores)
#   token:    the capacity rows in token mode: HTTPS login, secure netcode, the floor secure too (7 minutes)
#   abuse:    50 players chatting beside each kind of abuse (about 5 minutes)
#   ws:       500 players in token mode over UDP, 100 of them over WebSocket, all over WebSocket (4 minutes)
#   world:    players wandering (snapshot age, bytes per player), mmo and the all-to-all floor (4 minutes,
#             most of it the 1,000 logins)
#   npcs:     1,000 players idle at the spawn point (no character in view) and 1,000 wandering (among
#             the characters), each without characters and with 50 (--npcs; 5 minutes)
#   scale:    one process past 1,024 (issue 23): three runs each of move 1000, chat 500 beside the
#             floor and idle 4000 (20 frames a second: an idle client's cost to the server does not
#             depend on its frame rate), overload 800, and what one datagram costs alone (about 40
#             minutes, most of it 4,000 registrations three times)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}
set_name=${2:-all}
cargo build --release -p mmo -p mmo-loadgen
lg=target/release/mmo-loadgen
run() { echo "\$ mmo-loadgen $*"; "$lg" "$@" || true; echo; }
# The server the load generator starts inherits its environment: every flag has an env twin.
with_ws() {
    # Browser players (issue 25): the same 500, all over UDP, 100 over WebSocket, all over WebSocket.
    for ws in 0 100 500; do run chat --clients 500 --rate 1 --duration 20 --auth token --ws-clients $ws; done
    for ws in 0 100; do run move --clients 500 --duration 20 --auth token --ws-clients $ws; done
}
npcs() { local n=$1; shift; echo "\$ MMO_NPCS=$n mmo-loadgen $*"; MMO_NPCS=$n "$lg" "$@" || true; echo; }
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
ws() {
    # Browser players (issue 25): the same 500, all over UDP, 100 over WebSocket, all over WebSocket.
    for ws in 0 100 500; do run chat --clients 500 --rate 1 --duration 20 --auth token --ws-clients $ws; done
    for ws in 0 100; do run move --clients 500 --duration 20 --auth token --ws-clients $ws; done
}
npcs() {
    with_npcs 0 idle --clients 1000 --duration 20
    with_npcs 50 idle --clients 1000 --duration 20
    with_npcs 0 move --clients 1000 --duration 20
    with_npcs 50 move --clients 1000 --duration 20
}
scale() {
    "$lg" datagram-cost --bytes 100 --seconds 3 || true
    "$lg" datagram-cost --bytes 1000 --seconds 3 || true
    for _ in 1 2 3; do run move --clients 1000 --duration 20; done
    for _ in 1 2 3; do run chat --clients 500 --rate 1 --duration 20 --floor; done
    run overload --clients 800 --rate 1 --duration 20
    for _ in 1 2 3; do run idle --clients 4000 --duration 20 --client-hz 20; done
}
{
    case $set_name in
    capacity) capacity ;;
    token) token ;;
    abuse) abuse ;;
    world) world ;;
    ws) ws ;;
    npcs) npcs ;;
    scale) scale ;;
    *) capacity; token; abuse; world; ws; npcs; scale ;;
    esac
} >"$out" 2>&1
