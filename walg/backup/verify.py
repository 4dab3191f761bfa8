"""backup-verify: prove a backup (and its delta chain) restorable without restoring it.

Every backup of the chain, oldest first: its objects are listed and checked against
``files_metadata.json`` (every part TarFileSets names must exist; pg_control.tar and
backup_label for the backup named), then every object is downloaded, decrypted,
decompressed and read by the fetch graph with a verifying sink in place of the extractor
(``graphs.verify_graph``, the same widths as backup-fetch): each file's size and CRC-32C,
each increment's structure, and on a cluster with data checksums (as its own pg_control
says) the checksums of pages older than the backup's start LSN. Nothing is written to disk.

pg_control.tar is read first, in this process through the same graph, to learn whether
the cluster had data checksums. Problems are collected (every missing or bad object and
file), never raised; the caller decides the exit code from :attr:`VerifyReport.ok`. Errors
that say nothing about the backup (storage unreachable, no key, Ctrl-C) are raised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence

from walg.backup import completeness
from walg.backup.catalog import BackupInfo, find_backup, read_files_metadata
from walg.backup.fetch import _chain, _check_encryption, _method, _objects
from walg.backup.graphs import verify_graph
from walg.backup.verify_report import VerifyReport, missing_files, missing_parts
from walg.config import Settings
from walg.config.widths import fetch_width
from walg.errors import IntegrityError
from walg.format import layout
from walg.format.chain import plan_restore
from walg.format.meta import FilesMetadata
from walg.logs import get_logger
from walg.pipeline import InlineRuntime, ProcessRuntime, RunResult, StageProgress
from walg.postgres.control import parse_control
from walg.stages.download import ObjectRef
from walg.stages.verify import Problem, VerifiedPart
from walg.storage import Storage, open_storage

__all__ = ["VerifyReport", "backup_verify"]

_log = get_logger("walg")

ProgressSink = Callable[[Mapping[str, StageProgress], int], None]


def backup_verify(
    settings: Settings, name: str, *, progress: ProgressSink | None = None
) -> VerifyReport:
    """Verify backup ``name`` (or LATEST) and every backup of its delta chain."""
    started = time.monotonic()
    storage = open_storage(settings)
    storage.check_present()  # a missing file storage folder is an error, not an empty archive
    info = find_backup(storage, name)
    report = VerifyReport(info.name)
    try:
        chain = _chain(storage, info)
    except IntegrityError as err:  # a base is gone: still check what there is
        report.problem("missing_object", err.msg, info.name)
        chain = [info]
    report.chain = [b.name for b in chain]
    total = sum(b.sentinel.uncompressed_size for b in chain)
    metadata: list[tuple[str, FilesMetadata | None]] = []
    for backup in chain:
        files = _verify_one(storage, settings, backup, backup is info, report, progress, total)
        metadata.append((backup.name, files))
    _check_chain(metadata, report)
    report.duration = time.monotonic() - started
    _log.info("backup verified", backup=info.name, ok=report.ok, problems=len(report.problems))
    return report


def _verify_one(
    storage: Storage,
    settings: Settings,
    info: BackupInfo,
    named: bool,
    report: VerifyReport,
    progress: ProgressSink | None,
    total: int,
) -> FilesMetadata | None:
    """Check one backup of the chain into ``report``; its files metadata (if readable)."""
    name = info.name
    try:
        objects = _objects(storage, info)
        method = _method(objects, info)
    except IntegrityError as err:
        report.problem("missing_object" if "no objects" in err.msg else "bad_object", err.msg, name)
        return None
    encrypted = _check_encryption(storage, settings, objects, info.sentinel.encrypted)
    files = _files_metadata(storage, info, report)
    present = {o.name for o in objects}
    missing = missing_parts(present, files)
    for part in missing:
        message = f"backup {name}: {part} is missing from {layout.TAR_PARTITIONS}/"
        report.problem("missing_object", message, name, part)
    if named:
        _check_labels(name, present, report)
    control = [o for o in objects if o.name.startswith(layout.PG_CONTROL_PART)]
    rest = [o for o in objects if o not in control]
    run = _Runner(settings, method, encrypted, files, progress, total)
    parts = run.parts(control, InlineRuntime(on_progress=run.on_progress), None, report)
    since = _page_checks_since(info, parts, report)
    width = fetch_width(settings.concurrency, len(rest), os.cpu_count() or 1)
    runtime = ProcessRuntime(on_progress=run.on_progress, chaining=settings.concurrency.chaining)
    parts += run.parts(rest, runtime, since, report, width)
    report.add_parts(name, parts)
    _check_files(info, files, parts, set(missing), named, report)
    return files


def _files_metadata(
    storage: Storage, info: BackupInfo, report: VerifyReport
) -> FilesMetadata | None:
    try:
        files = read_files_metadata(storage, info.name)
    except IntegrityError as err:
        report.problem("bad_metadata", err.msg, info.name, layout.FILES_METADATA)
        return None
    if files is None:
        report.notes.append(
            f"backup {info.name} has no file list ({layout.FILES_METADATA}): whether every "
            "file is present, and their sizes and CRC-32C, could not be checked"
        )
    return files


def _check_labels(name: str, present: set[str], report: VerifyReport) -> None:
    """pg_control.tar and backup_label (which the restore of this backup needs)."""
    try:
        completeness.check_parts_present(name, present, None, None, restored=True)
    except IntegrityError as err:
        report.problem("missing_object", err.msg, name)


class _Runner:
    """Runs the verify graph over some objects of one backup."""

    def __init__(
        self,
        settings: Settings,
        method: str,
        encrypted: bool,
        files: FilesMetadata | None,
        progress: ProgressSink | None,
        total: int,
    ) -> None:
        self.settings = settings
        self.method = method
        self.encrypted = encrypted
        self.files = files
        self.progress = progress
        self.total = total

    def on_progress(self, stages: Mapping[str, StageProgress]) -> None:
        if self.progress is not None:
            self.progress(stages, self.total)

    def parts(
        self,
        objects: Sequence[ObjectRef],
        runtime: InlineRuntime | ProcessRuntime,
        since: int | None,
        report: VerifyReport,
        width: int = 1,
    ) -> list[VerifiedPart]:
        if not objects:
            return []
        graph = verify_graph(
            self.settings, objects, self.method, self.encrypted, width,
            files=self.files, page_since=since,
        )  # fmt: skip
        result: RunResult = runtime.run(graph)
        download = result.progress.get("download")
        report.stored_bytes += download.bytes if download is not None else 0
        return list(result.outputs["verify"])


def _page_checks_since(
    info: BackupInfo, parts: list[VerifiedPart], report: VerifyReport
) -> int | None:
    """The backup's start LSN if its pg_control says data checksums are on, else None."""
    control = next((p.control for p in parts if p.control is not None), None)
    if control is None:
        report.notes.append(f"backup {info.name}: no pg_control read, page checksums not checked")
        return None
    try:
        on = parse_control(control).data_checksums
    except (IntegrityError, ValueError) as err:
        message = f"backup {info.name}: {completeness.PG_CONTROL} is damaged: {err}"
        report.problem("bad_file", message, info.name, layout.PG_CONTROL_PART)
        return None
    if not on:
        report.notes.append(
            f"backup {info.name}: data checksums are off in its cluster, page checksums not checked"
        )
        return None
    return info.sentinel.start_lsn


def _check_files(
    info: BackupInfo,
    files: FilesMetadata | None,
    parts: list[VerifiedPart],
    lost: set[str],
    named: bool,
    report: VerifyReport,
) -> None:
    """Every file the metadata lists is in some part (those of parts missing or unreadable
    are counted, not named: their part is); backup_label for the backup named."""
    seen = {name for part in parts for name in part.files}
    failed = {part.name for part in parts if part.failed} | lost
    missing, unread = missing_files(files, seen, failed)
    for file in missing:
        message = f"backup {info.name}: {file} is listed in its files metadata but in no part"
        report.problems.append(Problem("missing_file", message, None, file, info.name))
    if unread:
        report.notes.append(
            f"backup {info.name}: {unread} file(s) in parts missing or unreadable were not checked"
        )
    unchecked = sum(part.unchecked for part in parts)
    if unchecked and files is not None:
        report.notes.append(
            f"backup {info.name}: {unchecked} file(s) have no recorded CRC-32C (written by "
            "WAL-G or an older walg): they were decoded but not compared"
        )
    if named and completeness.BACKUP_LABEL not in seen and not failed:
        message = f"backup {info.name} holds no {completeness.BACKUP_LABEL}"
        report.problems.append(
            Problem("missing_file", message, None, completeness.BACKUP_LABEL, info.name)
        )


def _check_chain(metadata: list[tuple[str, FilesMetadata | None]], report: VerifyReport) -> None:
    """A delta chain can be put together: every file the last backup relies on is stored
    whole by some backup of the chain."""
    if len(metadata) < 2:
        return
    if any(files is None for _, files in metadata):
        report.problem(
            "bad_metadata",
            "a backup of the delta chain has no files metadata: the chain cannot be put together",
            report.backup,
        )
        return
    try:
        plan_restore([(name, files or FilesMetadata()) for name, files in metadata])
    except IntegrityError as err:
        report.problem("bad_metadata", err.msg, report.backup)
