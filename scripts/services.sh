#!/usr/bin/env bash
# The engines shards use beyond one machine, from Debian's packages: installs them when missing.
# The tests start their own throwaway instances on loopback (tests/common/redis.rs,
# tests/common/postgres.rs); this only makes sure the programs are there.
#   redis:    redis-server (the bus, `--bus redis://…`)
#   postgres: the PostgreSQL server (initdb, postgres) and libpq-dev, which `--features postgres` links
#   chromium: headless Chromium and its WebDriver (chromedriver), which tests/browser.rs drives
#   node:     Node.js, which runs the web client's codec vectors (web/codec-test.mjs, from tests/browser.rs)
# Usage: scripts/services.sh install [redis|postgres|chromium|node]
set -euo pipefail
what=${2:-redis}

apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

case "${1:-}" in
    install)
        case "$what" in
            redis)
                if command -v redis-server >/dev/null; then exit 0; fi
                apt_install redis-server
                # Debian starts a system instance on 6379; the tests do not use it.
                command -v redis-server
                ;;
            postgres)
                if command -v pg_config >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
                    exit 0
                fi
                apt_install postgresql libpq-dev
                # Debian creates and starts a system cluster on 5432; the tests do not use it.
                ls /usr/lib/postgresql/*/bin/initdb
                ;;
            chromium)
                if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
                apt_install chromium chromium-driver
                command -v chromium chromedriver
                ;;
            node)
                if command -v node >/dev/null; then exit 0; fi
                apt_install nodejs
                command -v node
                ;;
            *) echo "unknown service: $what" >&2; exit 2 ;;
        esac
        ;;
    *) echo "usage: $0 install [redis|postgres|chromium|node]" >&2; exit 2 ;;
esac
