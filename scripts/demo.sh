#!/usr/bin/env bash
# The walg demo, run by `make demo` (which puts .venv/bin first on PATH).
#
# Today walg is a foundation: the `wal-g` command, its configuration and the stage
# pipeline. The backup commands are declared but not built yet, and they say so.
# Later versions turn this script into a real PostgreSQL backup and restore.
set -euo pipefail

step() { printf '\n$ %s\n' "$*"; }

step wal-g --version
wal-g --version

step wal-g --help
wal-g --help

# An unbuilt command fails honestly: an ERROR and a HINT on stderr, a non-zero exit.
storage=$(mktemp -d)
trap 'rm -rf "$storage"' EXIT
step WALG_FILE_PREFIX="$storage" wal-g backup-list
status=0
WALG_FILE_PREFIX="$storage" wal-g backup-list 2>&1 || status=$?
echo "(exit status $status)"

cat <<'TEXT'

That is all walg does so far. The backup commands (backup-push, backup-fetch, backup-list,
backup-mark, delete, wal-push, wal-fetch) arrive in later versions; this demo will then
back up a real PostgreSQL 15 cluster and restore it.
TEXT
