"""How the three concurrency settings become widths: each setting has one meaning, WAL-G's,
and every width in walg is derived here from it (pure functions, no I/O).

``WALG_UPLOAD_CONCURRENCY`` (N): how many uploads may be in flight at once.
  - backup-push: tar parts in flight (see :func:`push_widths`) times the S3 multipart
    threads of each part's upload stays within N;
  - wal-push: the file itself plus up to N-1 ready segments uploaded ahead; each upload
    compresses (lz4) in up to N threads, no more than the cores (see :func:`compress_threads`).
``WALG_DOWNLOAD_CONCURRENCY`` (D): how many downloads may be in flight at once.
  - backup-fetch: objects in flight (see :func:`fetch_width`);
  - wal-fetch: the D segments after the one asked for are prefetched;
  - backup-list, delete, backup-mark: up to D sentinels and metadata documents read at once.
``WALG_UPLOAD_DISK_CONCURRENCY`` (R): how many processes read PGDATA at once.
  - backup-push: reads are done by the tar stage (reading and tar composing are fused, so
    a file is read once); a semaphore of R lets only R of its workers read at a time.

The stage graphs are keyed by part: a part goes through tar, compress, [encrypt] and
upload in one worker of each stage, so all of them have the same width, the parts in
flight. That width is what the CPUs can compress (up to N), but never below R (the
readers are tar workers, so R of them need R workers), and never more than there are
parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from walg.config.settings import ConcurrencySettings

__all__ = [
    "PushWidths",
    "ahead_uploads",
    "compress_threads",
    "fetch_width",
    "listing_threads",
    "prefetch_count",
    "push_widths",
]


@dataclass(frozen=True)
class PushWidths:
    """The shape of a backup-push graph."""

    parts_in_flight: int  # workers of every stage (tar, compress, encrypt, upload)
    disk_readers: int  # of those, how many may read PGDATA at the same moment
    multipart_threads: int  # threads sending one object's S3 parts, per upload worker


def push_widths(concurrency: ConcurrencySettings, parts: int, cpus: int) -> PushWidths:
    """Widths of a backup-push of ``parts`` parts on ``cpus`` cores."""
    in_flight = max(concurrency.upload_disk, min(concurrency.upload, max(1, cpus)))
    in_flight = max(1, min(in_flight, parts))
    return PushWidths(
        parts_in_flight=in_flight,
        disk_readers=concurrency.upload_disk,
        multipart_threads=max(1, concurrency.upload // in_flight),
    )


def fetch_width(concurrency: ConcurrencySettings, objects: int, cpus: int) -> int:
    """Objects a backup-fetch downloads, decrypts, decompresses and extracts at once: D,
    but no more than the cores can decompress, nor than there are objects."""
    return max(1, min(concurrency.download, objects, max(1, cpus)))


def ahead_uploads(concurrency: ConcurrencySettings) -> int:
    """Ready segments one wal-push may upload ahead of PostgreSQL asking: N-1."""
    return concurrency.upload - 1


def compress_threads(concurrency: ConcurrencySettings, cpus: int) -> int:
    """Threads compressing one WAL upload's lz4 blocks at once: N, but no more than the
    cores (the compressor also caps it at the 4 blocks of a 16 MiB segment)."""
    return max(1, min(concurrency.upload, cpus))


def prefetch_count(concurrency: ConcurrencySettings) -> int:
    """Segments wal-fetch prefetches after the one asked for: D."""
    return concurrency.download


def listing_threads(concurrency: ConcurrencySettings) -> int:
    """Documents (sentinels, metadata) read at once when listing backups: D."""
    return concurrency.download
