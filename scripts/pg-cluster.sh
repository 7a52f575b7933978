# Sourced by the benchmark scripts: a throwaway PostgreSQL cluster on loopback (Debian's postgresql;
# `scripts/services.sh install postgres`), trust authentication, fsync off (a benchmark, not a store).
#   pg_start DIR PORT   initdb in DIR/pg and start it on 127.0.0.1:PORT; sets pg (the postmaster's pid)
#   pg_restart DIR      start it again after `kill -9 $pg` (a crash), on the same data
#   pg_createdb NAME    a new database; its URL is postgres://mmo@127.0.0.1:PORT/NAME
#   pg_ticks            CPU ticks of the postmaster and its children (the servers' connections)
# The caller stops it (its children are killed with the script's: `pkill -P $$`).

pg_start() {
    local dir=$1
    pg_port=$2
    # PostgreSQL refuses to run as root: as the postgres user then.
    local as_pg=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$dir"
        as_pg=(setpriv --reuid=postgres --regid=postgres --clear-groups)
    fi
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
    "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/pg" -U mmo --auth=trust --no-sync -E UTF8 --locale=C > /dev/null
    pg_restart "$dir"
}

# pg_restart DIR: starts the cluster of DIR/pg again (after `kill -9 $pg`: its backends exit when they
# notice; then it recovers) and waits until it answers; sets pg.
pg_restart() {
    local dir=$1 as_pg=()
    if [ "$(id -u)" = 0 ]; then as_pg=(setpriv --reuid=postgres --regid=postgres --clear-groups); fi
    for _ in $(seq 1 100); do
        "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || break
        sleep 0.1
    done
    "${as_pg[@]}" "$pg_bin/postgres" -D "$dir/pg" -p "$pg_port" -c listen_addresses=127.0.0.1 \
        -c unix_socket_directories= -c fsync=off 2>> "$dir/pg.log" &
    pg=$!
    for _ in $(seq 1 300); do
        "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && return
        sleep 0.1
    done
}

pg_createdb() {
    "$pg_bin/psql" -q "postgres://mmo@127.0.0.1:$pg_port/postgres" -c "CREATE DATABASE $1"
}

pg_ticks() {
    local sum=0 p
    for p in $pg $(pgrep -P "$pg"); do
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$sum"
}
