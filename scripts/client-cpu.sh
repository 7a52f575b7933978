#!/usr/bin/env bash
# Measures what the bundled client costs a player's machine: CPU of the mmo-client process (and of the
# X server drawing for it) over 10 s, on the login screen, in the chatbox with nobody talking, and in the
# world with about 20 players walking in view (60 load-generator players wandering a 300-unit square
# around the spawn point). The window is 1280x800 on Xvfb with Mesa's software Vulkan (lavapipe), as in
# scripts/screenshots.sh; a desktop GPU draws the same frames for far less CPU.
# Usage: scripts/client-cpu.sh   (after `cargo build --release -p mmo -p mmo-loadgen -p mmo-client`)
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in mmo mmo-loadgen mmo-client; do
    [[ -x target/release/$bin ]] || { echo "build target/release/$bin first" >&2; exit 1; }
done

tmp=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
addr=127.0.0.1:$port
target/release/mmo --bind "$addr" --db "$tmp/db.sqlite3" 2>"$tmp/server.log" &
server=$!
pids=("$server")
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.5; rm -rf "$tmp"' EXIT
sleep 1

ticks() { # utime + stime of a process, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

measure() { # LABEL: CPU of the client and of Xvfb over 10 s
    local client xvfb c0 x0
    client=$(pgrep -n -f '^target/release/mmo-client')
    xvfb=$(pgrep -n -x Xvfb)
    c0=$(ticks "$client") x0=$(ticks "$xvfb")
    sleep 10
    local hz
    hz=$(getconf CLK_TCK)
    awk -v label="$1" -v c="$(($(ticks "$client") - c0))" -v x="$(($(ticks "$xvfb") - x0))" -v hz="$hz" \
        'BEGIN { printf "%-32s client %.3f cores   Xvfb %.3f cores\n", label, c / hz / 10, x / hz / 10 }'
}

client() {
    xvfb-run -a -s "-screen 0 1280x800x24" target/release/mmo-client --server "$addr" "$@" \
        >"$tmp/client.log" 2>&1 &
    pids+=($!)
    sleep 6
}

stop_client() {
    pkill -f '^target/release/mmo-client' || true
    sleep 1
}

# 1. The login screen, fields filled in, nothing happening.
client --username alice --password "correct horse"
measure "login screen"
stop_client

# 2. The chatbox, logged in, nobody talking or walking.
client --username alice --password "correct horse" --auto-login
measure "chatbox idle (world empty)"

# 3. The same window while 60 players wander around the spawn point (about 20 in view at a time).
target/release/mmo-loadgen move --clients 60 --duration 40 --server "$addr" --server-pid "$server" \
    >"$tmp/loadgen.log" 2>&1 &
pids+=($!)
sleep 15
measure "world, ~20 players walking in view"
stop_client
