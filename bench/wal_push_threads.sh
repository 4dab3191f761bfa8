#!/bin/bash
# A/B of one wal-push through the background worker: lz4 compressed in 2 threads (the
# default on 2 cores) vs 1 (WALG_UPLOAD_CONCURRENCY=1), the two taking turns segment by
# segment, each in a PGDATA-shaped folder of its own with .ready written before the call
# as PostgreSQL does. Prints each side's times (ms), sorted, and the median.
#   bench/wal_push_threads.sh SEGMENT_DIR [COUNT]     (real 16 MiB WAL segments)
set -euo pipefail
segments=$1; count=${2:-21}
walg="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/wal-g"
work=$(mktemp -d /tmp/walg-threads-XXXXXX)
trap 'for d in A B; do pid=$(cat "$work/$d/pg_wal/walg_data/walg.sock.lock" 2>/dev/null || true); [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done; sleep 0.5; rm -rf "$work"' EXIT
for d in A B; do mkdir -p "$work/$d/pg_wal/archive_status" "$work/store$d"; done
export WALG_LOG_LEVEL=ERROR
for f in $(ls "$segments" | head -"$count"); do
  for d in A B; do
    if [ $d = A ]; then threads=""; else threads=1; fi
    cp "$segments/$f" "$work/$d/pg_wal/"; touch "$work/$d/pg_wal/archive_status/$f.ready"
    a=$(date +%s%N)
    (cd "$work/$d" && env WALG_FILE_PREFIX="$work/store$d" ${threads:+WALG_UPLOAD_CONCURRENCY=$threads} "$walg" wal-push "pg_wal/$f")
    b=$(date +%s%N)
    mv "$work/$d/pg_wal/archive_status/$f.ready" "$work/$d/pg_wal/archive_status/$f.done"
    rm "$work/$d/pg_wal/$f"
    echo "$d $(( (b - a) / 100000 ))"
  done
done | awk '{t[$1] = t[$1] " " $2 / 10} END {for (k in t) print k, t[k]}' | while read -r side times; do
  sorted=$(tr ' ' '\n' <<<"$times" | sort -n | tr '\n' ' ')
  median=$(tr ' ' '\n' <<<"$times" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  label=$([ "$side" = A ] && echo "2 threads" || echo "1 thread ")
  echo "$label median $median ms: $sorted"
done
