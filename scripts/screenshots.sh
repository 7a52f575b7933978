#!/usr/bin/env bash
# Renders the real client window off-screen and saves the README's two pictures:
#   docs/login.png  the login screen, name and (masked) password filled in
#   docs/chat.png   the chatbox after two scripted players talked
# It installs Xvfb and Mesa's software Vulkan (lavapipe) if they are missing (Debian, as root), starts a
# server on a temp database, runs a second player on the terminal example, and the Bevy client scripted
# with --auto-login/--say/--screenshot. Usage: scripts/screenshots.sh [OUT_DIR]
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
echo "saved $out/login.png and $out/chat.png"
