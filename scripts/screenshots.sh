#!/usr/bin/env bash
# Renders the real client window off-screen and saves the README's three pictures:
#   docs/login.png  the login screen, name and (masked) password filled in
#   docs/chat.png   the chatbox after two scripted players talked
#   docs/world.png  the world above the chatbox, with four more players walked into view
# It installs Xvfb and Mesa's software Vulkan (lavapipe) if they are missing (Debian, as root), starts a
# server on a temp database, runs a second player on the terminal example, and the Bevy client scripted
# with --auto-login/--say/--screenshot; the other players are terminal_chat examples (/move walks them).
# Usage: scripts/screenshots.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs}
mkdir -p "$out"

packages=(xvfb xauth mesa-vulkan-drivers libvulkan1)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release -p mmo --bin mmo --example terminal_chat
cargo build --release -p mmo-client

tmp=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
addr=127.0.0.1:$port
target/release/mmo --bind "$addr" --db "$tmp/db.sqlite3" 2>"$tmp/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
sleep 1

client() { xvfb-run -a -s "-screen 0 1280x800x24" target/release/mmo-client --server "$addr" "$@"; }

# 1. The login screen.
client --username alice --password "correct horse" --screenshot "$out/login.png" --screenshot-delay 2

# 2. The chatbox: bob (terminal client) is online first and greets; alice's client logs in and answers.
{
    printf '/register bob bobs-password\n/login bob bobs-password\n'
    sleep 7
    printf 'Hi alice! Καλημέρα, привет, grüß dich.\n'
    sleep 12
} | target/release/examples/terminal_chat "$addr" >"$tmp/bob.log" &
bob=$!
sleep 1
client --username alice --password "correct horse" --auto-login \
    --say "Hello bob! The log keeps scrolling as lines arrive." --say-after 8 \
    --screenshot "$out/chat.png" --screenshot-delay 2
wait $bob || true

# 3. The world: four players log in near the spawn point and walk to places around it (the world is
# 2048 units a side, new players appear within 32 of its centre, alice at (1029, 1045)); alice logs
# in among them, all within her view radius (100).
walker() { # NAME X Y LINE
    {
        printf '/register %s %s-password\n/login %s %s-password\n' "$1" "$1" "$1" "$1"
        sleep 2
        printf '/move %s %s\n' "$2" "$3"
        sleep 8
        printf '%s\n' "$4"
        sleep 10
    } | target/release/examples/terminal_chat "$addr" >"$tmp/$1.log" &
    walkers+=($!)
}
walkers=()
walker carol 1080 1000 "I found a quiet corner."
walker dave 970 1060 "Over here!"
walker erin 1010 960 "Anyone for a walk?"
walker frank 1060 1075 "Follow me!"
sleep 1
client --username alice --password "correct horse" --auto-login \
    --say "Everyone is here: click the field to walk." --say-after 9 \
    --screenshot "$out/world.png" --screenshot-delay 2
wait "${walkers[@]}" || true
echo "saved $out/login.png, $out/chat.png and $out/world.png"
