#!/usr/bin/env bash
# The engines shards use beyond one machine, from Debian's packages: installs them when missing.
# The tests start their own throwaway instances on loopback (tests/common/redis.rs); this only makes sure
# the programs are there.
# Usage: scripts/services.sh install [redis]
set -euo pipefail
what=${2:-redis}
case "${1:-}" in
    install)
        case "$what" in
            redis)
                if command -v redis-server >/dev/null; then exit 0; fi
                sudo=""
                if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
                $sudo apt-get update -qq
                DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
                # Debian starts a system instance on 6379; the tests do not use it.
                command -v redis-server
                ;;
            *) echo "unknown service: $what" >&2; exit 2 ;;
        esac
        ;;
    *) echo "usage: $0 install [redis]" >&2; exit 2 ;;
esac
