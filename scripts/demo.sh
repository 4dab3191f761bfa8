#!/usr/bin/env bash
# The walg demo, run by `make demo` (which puts .venv/bin first on PATH):
# a throwaway PostgreSQL 15 cluster with pgbench data is backed up with `wal-g backup-push`
# to file storage (a full backup, then a delta after more writes), the delta restored with
# `wal-g backup-fetch` into a new directory, started, and its data compared with the
# original's.
#
#   DEMO_DIR   where everything goes (default /tmp/walg-demo; recreated on each run)
#   DEMO_SCALE pgbench scale (default 10, about 150 MB)
#   DEMO_KEEP  set to 1 to leave both servers running (stop with `scripts/demo.sh stop`)
set -euo pipefail

DEMO_DIR=${DEMO_DIR:-/tmp/walg-demo}
DEMO_SCALE=${DEMO_SCALE:-10}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MARK="$DEMO_DIR/.walg-demo"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
as_server() {  # PostgreSQL refuses to run as root: run server programs as postgres then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
stop_all() {
    for data in "$DEMO_DIR/data" "$DEMO_DIR/restore"; do
        [ -f "$data/postmaster.pid" ] && as_server "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
    done
}

if [ "${1:-}" = stop ]; then stop_all; exit 0; fi
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL 15 is not installed (run: make deps)" >&2; exit 1; }

# A fresh demo directory; refuse to delete anything we did not create.
if [ -e "$DEMO_DIR" ]; then
    [ -f "$MARK" ] || { echo "$DEMO_DIR exists and is not a walg demo directory" >&2; exit 1; }
    stop_all
    rm -rf "$DEMO_DIR"
fi
mkdir -p "$DEMO_DIR"/{run,storage}
touch "$MARK"
chmod 755 "$DEMO_DIR"
[ "$(id -u)" = 0 ] && chown postgres "$DEMO_DIR/run"
trap '[ "${DEMO_KEEP:-0}" = 1 ] || stop_all' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
RESTORE_PORT=$(free_port)
OWNER=$([ "$(id -u)" = 0 ] && echo postgres || id -un)

step "initdb + start a cluster on port $PORT, socket in $DEMO_DIR/run"
install -d -o "$OWNER" -m 700 "$DEMO_DIR/data"
install -d -o "$OWNER" -m 755 "$DEMO_DIR/log" "$DEMO_DIR/bin"
chown "$OWNER" "$DEMO_DIR/storage"
# PostgreSQL runs archive_command/restore_command with its own environment: a wrapper
# script carries walg's settings (here just the storage) to them.
cat >"$DEMO_DIR/bin/wal-g" <<SCRIPT
#!/bin/sh
export WALG_FILE_PREFIX='$DEMO_DIR/storage'
exec '$(command -v wal-g)' "\$@"
SCRIPT
chmod 755 "$DEMO_DIR/bin/wal-g"
as_server "$PG_BIN/initdb" -D "$DEMO_DIR/data" --auth=trust -U postgres --no-sync >/dev/null
cat >>"$DEMO_DIR/data/postgresql.conf" <<CONF
port = $PORT
unix_socket_directories = '$DEMO_DIR/run'
listen_addresses = ''
wal_level = replica
archive_mode = on
archive_command = '$DEMO_DIR/bin/wal-g wal-push %p'
CONF
as_server "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -l "$DEMO_DIR/log/data.log" -w start >/dev/null

export PGHOST="$DEMO_DIR/run" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres
export WALG_FILE_PREFIX="$DEMO_DIR/storage"
step "pgbench -i -s $DEMO_SCALE"
"$PG_BIN/pgbench" -i -q -s "$DEMO_SCALE" 2>&1 | tail -1
CHECK="SELECT count(*) || ' accounts, balance ' || sum(abalance) || ', md5 ' || md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts"
"$PG_BIN/pgbench" -n -T 3 -c 2 >/dev/null

step "wal-g backup-push $DEMO_DIR/data  (a full backup)"
wal-g backup-push "$DEMO_DIR/data"

step "pgbench -T 3, then WALG_DELTA_MAX_STEPS=1 wal-g backup-push  (a delta: only changed pages)"
"$PG_BIN/pgbench" -n -T 3 -c 2 >/dev/null
BEFORE=$("$PG_BIN/psql" -XAtc "$CHECK")
echo "original:  $BEFORE"
WALG_DELTA_MAX_STEPS=1 wal-g backup-push "$DEMO_DIR/data"
"$PG_BIN/psql" -XAtqc "SELECT pg_switch_wal()" >/dev/null

step "wal-g backup-list --detail"
wal-g backup-list --detail

step "wal-g backup-fetch $DEMO_DIR/restore LATEST  (the delta, put together with its full)"
wal-g backup-fetch "$DEMO_DIR/restore" LATEST

step "ls storage/wal_005  (WAL archived by archive_command = wal-g wal-push %p)"
ls "$DEMO_DIR/storage/wal_005" | head -5

step "start the restored cluster on port $RESTORE_PORT (restore_command = wal-g wal-fetch, to the backup's end)"
cat >>"$DEMO_DIR/restore/postgresql.conf" <<CONF
port = $RESTORE_PORT
restore_command = '$DEMO_DIR/bin/wal-g wal-fetch %f %p'
recovery_target = 'immediate'
recovery_target_action = 'promote'
archive_mode = off
CONF
touch "$DEMO_DIR/restore/recovery.signal"
[ "$(id -u)" = 0 ] && chown -R postgres "$DEMO_DIR/restore"
as_server "$PG_BIN/pg_ctl" -D "$DEMO_DIR/restore" -l "$DEMO_DIR/log/restore.log" -w start >/dev/null
AFTER=$(PGPORT=$RESTORE_PORT "$PG_BIN/psql" -XAtc "$CHECK")
echo "original:  $BEFORE"
echo "restored:  $AFTER"
if [ "$BEFORE" != "$AFTER" ]; then echo "MISMATCH: the restored data differs" >&2; exit 1; fi
echo "The restored cluster holds exactly the data that was backed up."

cat <<TEXT

Everything is in $DEMO_DIR:
  data/      the original cluster (port $PORT)      storage/   what wal-g stored (WALG_FILE_PREFIX)
  restore/   the restored cluster (port $RESTORE_PORT)   bin/wal-g  the wrapper archive_command uses
  log/       both servers' logs
Servers are stopped on exit; run with DEMO_KEEP=1 to keep them (then: scripts/demo.sh stop).
TEXT
