#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, on loopback only.
#   scripts/postgres.sh start   -> installs Debian's postgresql if missing, starts the cluster, prints its URL
#                                  (a cluster that is not running is thrown away and made anew: see below)
#   scripts/postgres.sh stop
#   scripts/postgres.sh status  -> exit 0 when the cluster is running (never installs anything)
#   scripts/postgres.sh url
set -euo pipefail
PGPORT="${EXOSPHERE_PG_PORT:-55432}"
PGDATA="${EXOSPHERE_PG_DIR:-/tmp/exosphere-pg}"
URL="postgresql://postgres@127.0.0.1:${PGPORT}/postgres"

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ]; then
    echo "installing PostgreSQL (Debian package)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$dir"
}

as_postgres() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    BIN=$(pg_bin)
    # One start at a time: two test runs starting together must not remove each other's cluster.
    exec 9>"$PGDATA.lock"
    flock -w 600 9
    if as_postgres "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then echo "$URL"; exit 0; fi
    # Nothing in the cluster outlives its server: every test makes databases of its own. A folder left
    # by a server that was killed would first be recovered, and that recovery fsyncs every file of the
    # thousands of databases the last runs made (over a minute, longer than pg_ctl waits), so a new one
    # is made instead (initdb: about a second).
    # Only a folder this script made goes (its server log is in it): EXOSPHERE_PG_DIR could name another.
    if [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ] && [ ! -e "$PGDATA/server.log" ]; then
      echo "$PGDATA is not a cluster made by $0 (no server.log in it): not removing it; set EXOSPHERE_PG_DIR" >&2
      exit 1
    fi
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = "0" ] && chown postgres:postgres "$PGDATA"
    as_postgres "$BIN/initdb" -D "$PGDATA" -A trust -U postgres >/dev/null
    # 9>&-: the server must not inherit the lock, or it would hold it for as long as it runs.
    as_postgres "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 300 start \
      -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300" >/dev/null 9>&-
    echo "$URL"
    ;;
  stop)
    BIN=$(pg_bin)
    as_postgres "$BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
    ;;
  status)
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$dir" ] && as_postgres "$dir/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
    ;;
  url)
    echo "$URL"
    ;;
  *)
    echo "usage: $0 start|stop|status|url" >&2; exit 2;;
esac
