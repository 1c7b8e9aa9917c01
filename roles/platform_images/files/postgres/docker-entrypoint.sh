#!/bin/sh
# MT5 Farm offline postgres image: the official image's entrypoint contract, reduced to what
# the platform_postgres role uses. On an empty $PGDATA: initdb with POSTGRES_USER (default
# postgres) and the password in POSTGRES_PASSWORD_FILE, host connections with
# POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), listen on all addresses, create
# POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql and *.sh. Then exec the command.
set -eu

if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    # As root (the official image's default): own the data directory, then drop to postgres.
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    pwfile="${POSTGRES_PASSWORD_FILE:-}"
    if [ -z "$pwfile" ] || [ ! -r "$pwfile" ]; then
        echo >&2 "docker-entrypoint: set POSTGRES_PASSWORD_FILE to a readable file holding the superuser's password"
        exit 1
    fi
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list, as in the official image
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
    printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
    db="${POSTGRES_DB:-$user}"
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -q -c "CREATE DATABASE \"$db\""
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -q -f "$script" ;;
            *.sh) . "$script" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "docker-entrypoint: initialised $PGDATA (database $db, superuser $user)"
fi

exec "$@"
