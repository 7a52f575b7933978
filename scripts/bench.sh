#!/usr/bin/env bash
# Runs the BENCHMARKS.md set: every scenario against mmo and the floor relay in the same invocation.
# Usage: scripts/bench.sh [OUT_FILE]   (release build first; about 6 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}
cargo build --release -p mmo -p mmo-loadgen
lg=target/release/mmo-loadgen
run() { echo "\$ mmo-loadgen $*"; "$lg" "$@" || true; echo; }
{
    run chat --clients 10 --rate 1 --duration 20 --floor
    run chat --clients 50 --rate 1 --duration 20 --floor
    run chat --clients 200 --rate 1 --duration 20 --floor
    run login-storm --clients 200 --rate 10 --floor
    run idle --clients 0 --duration 20 --floor
    run idle --clients 1000 --duration 20 --floor
} >"$out" 2>&1
