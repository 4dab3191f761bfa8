"""backup-push: a non-exclusive base backup of a running cluster, as WAL-G stores it.

Order of events (the sentinel is the only commit point; a crash before it leaves objects
that no command treats as a backup, and ``delete garbage`` removes them):

1. connect, check PGDATA is the server's data directory, pg_backup_start (fast); claim
   the backup's name, so no other backup-push writes under it (:mod:`walg.backup.claim`);
2. scan PGDATA and tablespaces, plan parts, run the push graph (all but pg_control);
3. store pg_control in its own part, after every other part is stored (this small part
   and the label's are stored from this process: no workers to start);
4. pg_backup_stop, waiting for the WAL to be archived, then the stop segment checked in
   this storage (:mod:`walg.backup.archive_check`); store backup_label (and
   tablespace_map) in backup_label.tar.<ext>;
5. check the claim still holds; metadata.json, files_metadata.json, then the sentinel,
   written only if the name has none.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from walg.backup.archive_check import stop_and_check
from walg.backup.catalog import list_backups, read_files_metadata
from walg.backup.claim import (
    Claim,
    claim_name,
    confirm_claim,
    finish_claim,
    put_sentinel,
    released_on_failure,
)
from walg.backup.delta import Action, DeltaBase, check_base, choose_base, file_action
from walg.backup.graphs import push_graph
from walg.backup.marking import mark_backup
from walg.backup.partial import record_databases
from walg.backup.prechecks import check_before_backup
from walg.config import Settings
from walg.config.widths import PushWidths, push_widths
from walg.errors import PostgresError
from walg.format import layout
from walg.format.meta import (
    MAX_CORRUPT_BLOCKS,
    DatabaseObjects,
    ExtendedMetadata,
    FileDescription,
    FilesMetadata,
    Sentinel,
    TablespaceSpec,
)
from walg.format.scan import PG_CONTROL, Entry, Part, plan_parts, scan
from walg.logs import get_logger
from walg.pipeline import InlineRuntime, ProcessRuntime, StageProgress
from walg.postgres.connection import BackupStart, PgConnection, connect
from walg.postgres.wal import format_lsn, history_file_name, parse_history
from walg.stages.chunks import PartDone
from walg.stages.throttle import Throttles
from walg.storage import Storage, open_storage

__all__ = ["PushResult", "backup_push", "choose_part_size"]

_log = get_logger("walg")
_MIN_PART = 64 << 20

ProgressSink = Callable[[Mapping[str, StageProgress], int], None]


@dataclass(frozen=True)
class PushResult:
    name: str
    sentinel: Sentinel
    parts: int


def choose_part_size(threshold: int, total: int, width: int) -> int:
    """Parts of at most ``threshold`` bytes, but small enough that ``width`` workers all get
    work (about four parts each) on a small database; never below 64 MiB."""
    return max(min(threshold, total // max(1, width * 4)), min(threshold, _MIN_PART))


@dataclass(frozen=True)
class _Delta:
    """What the disk readers need to know of a delta's base."""

    base: DeltaBase
    files: Mapping[str, FileDescription]

    def action(self, entry: Entry) -> Action:
        return file_action(entry, self.files, self.base.backup.sentinel.start_time)


@dataclass
class _Stored:
    """The objects stored so far, the files a delta skipped, and the size of the data."""

    done: list[PartDone]
    skipped: list[Entry]
    catalog_size: int
    databases: dict[str, DatabaseObjects] | None = None  # DatabasesByNames


def backup_push(
    settings: Settings,
    pgdata: str,
    *,
    permanent: bool = False,
    full: bool = False,
    delta_from_name: str | None = None,
    verify: bool = False,
    progress: ProgressSink | None = None,
) -> PushResult:
    """Take a base backup of the cluster at ``pgdata`` (full, or a delta when
    WALG_DELTA_MAX_STEPS or ``delta_from_name`` ask for one and ``full`` does not); return
    its name. With ``verify`` (or WALG_VERIFY_PAGE_CHECKSUMS), page checksums are checked
    as files are read; failures are logged and recorded, never fatal."""
    storage = open_storage(settings)
    check_before_backup(settings.crypto, storage)  # key and storage, before the server works
    with connect(settings.postgres) as pg:
        data_dir = _check_data_directory(pg, pgdata)
        tablespaces = {str(t.oid): t.location for t in pg.tablespaces()}
        system_id = pg.system_identifier()
        delta = _delta(storage, settings, full, delta_from_name)
        verify = _verify(pg, verify or settings.backup.verify_page_checksums)
        started_at = datetime.now(UTC)
        start = pg.start_backup(f"walg backup {started_at.isoformat()}", fast=True)
        if delta is not None:
            history = _history(data_dir, start.timeline, delta.base)
            check_base(delta.base, system_id, start.lsn, start.timeline, history)
        base_wal = delta.base.backup.wal_file if delta is not None else None
        name = layout.backup_name(start.wal_file_name, base_wal)
        claim = claim_name(storage, name)  # before any part: one push per name
        _log.info(
            "backup started", backup=name, lsn=format_lsn(start.lsn), timeline=start.timeline
        )
        verify_since = start.lsn if verify else None
        with released_on_failure(storage, claim):
            stored = _store_data(
                settings, storage, name, data_dir, tablespaces, progress, delta, verify_since
            )
            stop = stop_and_check(pg, storage, settings.backup, start, data_dir)
            stored.done += _store_labels(
                settings, storage, name, stop.label_file, stop.tablespace_map
            )
            stored.databases = record_databases(settings, pg)
            sentinel = dataclasses.replace(
                _sentinel(settings, start, stop.lsn, system_id, data_dir, tablespaces, stored),
                start_time=started_at,
                finish_time=datetime.now(UTC),
                is_permanent=permanent,
            )
            if delta is not None:
                sentinel = _delta_sentinel(sentinel, delta.base)
            chain_to_mark = delta.base.name if permanent and delta is not None else None
            _commit(storage, claim, sentinel, stored, chain_to_mark)
    _report_corruption(stored)
    _log.info(
        "backup finished", backup=name, finish_lsn=format_lsn(stop.lsn), parts=len(stored.done),
        size=sentinel.uncompressed_size, stored_bytes=sentinel.compressed_size,
    )  # fmt: skip
    return PushResult(name, sentinel, len(stored.done))


def _delta_sentinel(sentinel: Sentinel, base: DeltaBase) -> Sentinel:
    """``sentinel`` with the keys that make it a delta on ``base``."""
    return dataclasses.replace(
        sentinel,
        delta_from=base.name,
        delta_full_name=base.full_name,
        delta_count=base.count,
        delta_lsn=base.start_lsn,
    )


def _history(data_dir: str, timeline: int, base: DeltaBase) -> dict[int, int]:
    """The current timeline's history, when the base was taken on another timeline."""
    if base.backup.sentinel.timeline == timeline or timeline == 1:
        return {}
    path = os.path.join(data_dir, "pg_wal", history_file_name(timeline))
    try:
        with open(path, encoding="utf-8") as f:
            return parse_history(f.read())
    except (OSError, ValueError) as err:
        _log.warning("cannot read the timeline history", path=path, error=str(err))
        return {}


def _verify(pg: PgConnection, wanted: bool) -> bool:
    if wanted and not pg.data_checksums():
        _log.warning(
            "page checksums are off in this cluster: nothing to verify",
            hint="initdb --data-checksums, or pg_checksums --enable on a stopped cluster",
        )
        return False
    return wanted


def _report_corruption(stored: _Stored) -> None:
    damaged = {
        name: info.corrupt_blocks
        for part in stored.done
        for name, info in part.report.files.items()
        if info.corrupt_blocks
    }
    if damaged:
        _log.warning(
            "pages failed checksum verification; the backup holds them as read",
            pages=sum(len(b) for b in damaged.values()),
            files=sorted(damaged)[:10],
            hint="see CorruptBlocks in files_metadata.json; check the disk and the cluster",
        )


def _delta(
    storage: Storage, settings: Settings, full: bool, from_name: str | None
) -> _Delta | None:
    """The base of a delta backup and its files, or None for a full backup."""
    steps = settings.backup.delta_max_steps
    if full or (steps <= 0 and not from_name):
        return None
    base = choose_base(
        list_backups(storage),
        max_steps=steps,
        origin=settings.backup.delta_origin,
        from_name=from_name,
    )
    if base is None:
        _log.info("taking a full backup", reason="no base, or the chain is long enough")
        return None
    files = read_files_metadata(storage, base.name)
    if files is None:
        _log.warning(
            "the base backup has no files metadata: every file is stored whole",
            base=base.name,
        )
    _log.info("taking a delta backup", base=base.name, count=base.count, full=base.full_name)
    return _Delta(base, files.files if files is not None else {})


def _check_data_directory(pg: PgConnection, pgdata: str) -> str:
    given = os.path.realpath(pgdata)
    served = os.path.realpath(pg.data_directory())
    if given != served:
        raise PostgresError(
            f"{pgdata} is not the data directory of the server walg connected to ({served})",
            hint="pass the server's data directory, or point PGHOST/PGPORT at its server",
        )
    if not os.path.isfile(os.path.join(given, PG_CONTROL)):
        raise PostgresError(
            f"{given} has no {PG_CONTROL}", hint="is this a PostgreSQL data directory?"
        )
    return given


def _store_data(
    settings: Settings,
    storage: Storage,
    name: str,
    data_dir: str,
    tablespaces: dict[str, str],
    progress: ProgressSink | None,
    delta: _Delta | None,
    verify_since: int | None,
) -> _Stored:
    entries = list(scan(data_dir, tablespaces))
    catalog_size = sum(e.size for e in entries if e.kind == "file")
    skipped: list[Entry] = []
    if delta is not None:
        entries, skipped = _filter(entries, delta)
    total = sum(e.size for e in entries if e.kind == "file")
    cpus = os.cpu_count() or 1
    widths = push_widths(settings.concurrency, max(1, total // _MIN_PART), cpus)
    width = widths.parts_in_flight
    size = choose_part_size(settings.backup.tar_size_threshold, total, width)
    parts = plan_parts(entries, size)
    _log.info(
        "backup planned",
        files=len(entries),
        bytes=total,
        parts=len(parts),
        workers=width,
        skipped=len(skipped),
    )
    done = _run(settings, name, parts, widths, total, progress, verify_since)
    control = [e for e in entries if e.name == PG_CONTROL]
    if not control:
        raise PostgresError(f"{PG_CONTROL} vanished during the backup")
    last = Part(len(parts) + 1, tuple(control), layout.PG_CONTROL_PART)
    done += _run_here(settings, storage, name, last)
    return _Stored(done, skipped, catalog_size)


def _filter(entries: list[Entry], delta: _Delta) -> tuple[list[Entry], list[Entry]]:
    """Split a delta's entries into those to store (relation files marked for increments)
    and the files skipped as unchanged since the base."""
    kept: list[Entry] = []
    skipped: list[Entry] = []
    for entry in entries:
        action = delta.action(entry) if entry.kind == "file" else Action.WHOLE
        if action is Action.SKIP:
            skipped.append(entry)
        elif action is Action.INCREMENT:
            kept.append(dataclasses.replace(entry, since_lsn=delta.base.start_lsn))
        else:
            kept.append(entry)
    return kept, skipped


def _run(
    settings: Settings,
    name: str,
    parts: list[Part],
    widths: PushWidths,
    total: int,
    progress: ProgressSink | None,
    verify_since: int | None = None,
) -> list[PartDone]:
    on_progress = None if progress is None else (lambda p: progress(p, total))
    runtime = ProcessRuntime(
        on_progress=on_progress,
        log_level=_level(settings),
        chaining=settings.concurrency.chaining,
    )
    graph = push_graph(settings, layout.parts_prefix(name), parts, widths, verify_since)
    result = runtime.run(graph, shared=_throttles(settings).shared())
    return list(result.outputs["upload"])


def _run_here(settings: Settings, storage: Storage, name: str, part: Part) -> list[PartDone]:
    """Store one small part (pg_control, the backup label) through the same push graph,
    run in this process, through ``storage``: no workers to fork, no client to make."""
    widths = push_widths(settings.concurrency, parts=1, cpus=1)
    graph = push_graph(settings, layout.parts_prefix(name), [part], widths, storage=storage)
    result = InlineRuntime().run(graph, shared=_throttles(settings).shared())
    return list(result.outputs["upload"])


def _level(settings: Settings) -> int:
    import logging

    return logging.getLevelNamesMapping()[settings.log.level]


def _throttles(settings: Settings) -> Throttles:
    return Throttles.create(
        readers=settings.concurrency.upload_disk,
        disk_rate=settings.rate_limits.disk,
        network_rate=settings.rate_limits.network,
    )


def _store_labels(
    settings: Settings, storage: Storage, name: str, label: str, spcmap: str
) -> list[PartDone]:
    with tempfile.TemporaryDirectory(prefix="walg-label-") as tmp:
        entries = []
        now = time.time()
        for base, text in (("backup_label", label), ("tablespace_map", spcmap)):
            if base == "tablespace_map" and not text:
                continue
            path = os.path.join(tmp, base)
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
            entries.append(Entry(base, path, "file", len(text.encode()), now, 0o600))
        return _run_here(settings, storage, name, Part(0, tuple(entries), layout.BACKUP_LABEL_PART))


def _sentinel(
    settings: Settings,
    start: BackupStart,
    finish_lsn: int,
    system_id: int,
    data_dir: str,
    tablespaces: dict[str, str],
    stored: _Stored,
) -> Sentinel:
    done = stored.done
    return Sentinel(
        start_lsn=start.lsn,
        finish_lsn=finish_lsn,
        timeline=start.timeline,
        pg_version=start.server_version_num,
        system_identifier=system_id,
        uncompressed_size=sum(d.report.tar_size for d in done),
        compressed_size=sum(d.stored_bytes for d in done),
        data_catalog_size=stored.catalog_size,
        spec=TablespaceSpec(data_dir, tablespaces),
        user_data=settings.backup.sentinel_user_data,
        hostname=socket.gethostname(),
        data_dir=data_dir,
        compression=settings.compression.method,
        encrypted=settings.crypto.enabled,
    )


def _files_metadata(stored: _Stored) -> FilesMetadata:
    files: dict[str, FileDescription] = {}
    sets: dict[str, list[str]] = {}
    for part in stored.done:
        described = part.report.files
        sets[part.name] = sorted(described)
        for fname, info in described.items():
            files[fname] = FileDescription(
                datetime.fromtimestamp(info.mtime, UTC),
                is_incremented=info.incremented,
                size=info.size,
                crc32c=info.crc32c,
                corrupt_count=len(info.corrupt_blocks),
                corrupt_blocks=info.corrupt_blocks[:MAX_CORRUPT_BLOCKS],
            )
    for entry in stored.skipped:
        files["/" + entry.name] = FileDescription(
            datetime.fromtimestamp(entry.mtime, UTC), is_skipped=True
        )
    return FilesMetadata(files, sets, stored.databases)


def _mark_chain_permanent(storage: Storage, base: str) -> None:
    """A permanent delta needs its bases: mark them as backup-mark does, before the
    delta's sentinel, so a permanent delta never exists on an impermanent base."""
    for line in mark_backup(storage, base, permanent=True):
        _log.info("permanent delta: base chain marked", detail=line)


def _commit(
    storage: Storage, claim: Claim, sentinel: Sentinel, stored: _Stored, mark: str | None
) -> None:
    """Check the claim, mark the base chain of a permanent delta (``mark``: its base),
    then write metadata.json, files_metadata.json and, last, the sentinel."""
    import json

    def dump(doc: Any) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    name = claim.name
    confirm_claim(storage, claim)
    if mark is not None:
        _mark_chain_permanent(storage, mark)
    storage.put_object(
        layout.metadata_key(name), dump(ExtendedMetadata.from_sentinel(sentinel).to_json())
    )
    storage.put_object(layout.files_metadata_key(name), dump(_files_metadata(stored).to_json()))
    put_sentinel(storage, claim, dump(sentinel.to_json()))
    finish_claim(storage, claim)  # a lost sentinel later: garbage at once, no grace
