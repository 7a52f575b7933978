# Sourced by the benchmark scripts: a throwaway PostgreSQL cluster on loopback (Debian's postgresql;
# `scripts/services.sh install postgres`), trust authentication, fsync off (a benchmark, not a store).
#   pg_start DIR PORT   initdb in DIR/pg and start it on 127.0.0.1:PORT; sets pg (the postmaster's pid)
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
    "${as_pg[@]}" "$pg_bin/postgres" -D "$dir/pg" -p "$pg_port" -c listen_addresses=127.0.0.1 \
        -c unix_socket_directories= -c fsync=off 2> "$dir/pg.log" &
    pg=$!
    sleep 2
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
