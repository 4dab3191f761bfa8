"""Synthetic backup trees in any storage: sentinels, metadata, parts and WAL objects laid
out as backup-push and wal-push write them, with small made-up contents. For tests of
delete and backup-mark that need many backups quickly (restores need real ones)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from walg.format import layout
from walg.format.meta import ExtendedMetadata, Sentinel
from walg.postgres.wal import DEFAULT_SEGMENT_SIZE, history_file_name, segment_name
from walg.storage.base import Storage

__all__ = ["SEG", "at", "put_backup", "put_history", "put_wal", "wal_key"]

SEG = DEFAULT_SEGMENT_SIZE
_BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    """A start time ``hours`` after an arbitrary origin."""
    return _BASE_TIME + timedelta(hours=hours)


def put_backup(
    storage: Storage,
    start_seg: int,
    started: datetime,
    *,
    timeline: int = 1,
    finish_seg: int | None = None,
    delta_from: str | None = None,
    delta_full_name: str | None = None,
    permanent: bool = False,
    parts: int = 2,
    part_size: int = 100,
    with_sentinel: bool = True,
) -> str:
    """Store a backup starting in segment ``start_seg``; return its name."""
    start_lsn = start_seg * SEG + 0x28
    finish_lsn = (start_seg if finish_seg is None else finish_seg) * SEG + 0x100
    base_wal = None
    if delta_from is not None:
        base_wal = delta_from.removeprefix("base_")[:24]
    name = layout.backup_name(segment_name(timeline, start_seg), base_wal)
    for i in range(1, parts + 1):
        storage.put_object(layout.part_key(name, layout.part_name(i, "lz4")), b"p" * part_size)
    sentinel = Sentinel(
        start_lsn=start_lsn,
        finish_lsn=finish_lsn,
        timeline=timeline,
        pg_version=150004,
        start_time=started,
        finish_time=started + timedelta(minutes=5),
        delta_from=delta_from,
        delta_full_name=delta_full_name or (delta_from and _full_of(storage, delta_from)),
        delta_count=1 if delta_from else None,
        delta_lsn=start_lsn - SEG if delta_from else None,
        is_permanent=permanent,
    )
    meta = ExtendedMetadata.from_sentinel(sentinel).to_json()
    storage.put_object(layout.metadata_key(name), json.dumps(meta).encode())
    if with_sentinel:
        doc = sentinel.to_json()
        doc["Files"] = {"/base/1/1": {"IsIncremented": False, "MTime": "2026-11-01T00:00:00Z"}}
        storage.put_object(layout.sentinel_key(name), json.dumps(doc).encode())
    return name


def _full_of(storage: Storage, name: str) -> str:
    doc = json.loads(storage.read_bytes(layout.sentinel_key(name)))
    return str(doc.get("DeltaFullName") or name)


def wal_key(timeline: int, seg: int, ext: str = "lz4") -> str:
    return f"{layout.WAL}/{segment_name(timeline, seg)}.{ext}"


def put_wal(
    storage: Storage, timeline: int, segs: range | list[int], size: int = 10, ext: str = "lz4"
) -> list[str]:
    """Store WAL segments ``segs`` of ``timeline`` (``size`` bytes each); return the keys."""
    keys = [wal_key(timeline, seg, ext) for seg in segs]
    for key in keys:
        storage.put_object(key, b"w" * size)
    return keys


def put_history(storage: Storage, timeline: int) -> str:
    key = f"{layout.WAL}/{history_file_name(timeline)}.lz4"
    storage.put_object(key, b"history")
    return key
