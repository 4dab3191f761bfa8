"""backup-fetch: restore a base backup (a delta with its chain) into an empty directory.

Data parts are downloaded, decrypted, decompressed and extracted in parallel; then
backup_label.tar; pg_control.tar last, so that an interrupted restore never looks like a
startable cluster. Files are fsynced as they are written and checked against the
backup's sizes and CRC-32C values; directories are fsynced at the end.

Nothing is written before every object the restore needs is known to exist, and
pg_control is written only once every file the metadata lists has been restored
(see completeness): a failed restore never leaves global/pg_control behind.

Tablespaces are restored as WAL-G restores them: the pg_tblspc/<oid> links to their
(possibly remapped) locations are made here, before anything is extracted, and the
backup's tablespace_map is not restored. PostgreSQL needs no tablespace_map when the links
exist (pg_basebackup's plain format writes none either); with one present it would
re-create the links from it at its first start, and WAL-G's scripts check there is none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from walg import compression
from walg.backup import completeness
from walg.backup.catalog import BackupInfo, find_backup, read_files_metadata
from walg.backup.graphs import fetch_graph
from walg.backup.recovery import (
    RecoveryOptions,
    disable_previous,
    write_recovery,
)
from walg.config import Settings
from walg.config.widths import fetch_width
from walg.errors import (
    BackupNotFound,
    Cancelled,
    ConfigError,
    CryptoError,
    IntegrityError,
    WalgError,
)
from walg.format import layout
from walg.format.chain import Selection, parts_needed, plan_restore, walk_bases
from walg.format.meta import FilesMetadata
from walg.format.scan import PG_CONTROL
from walg.fsutil import fsync_dir
from walg.logs import get_logger
from walg.pipeline import ProcessRuntime, StageProgress
from walg.stages.download import ObjectRef
from walg.storage import ObjectInfo, Storage, open_storage

__all__ = ["FetchResult", "backup_fetch", "parse_tablespace_remap", "prepare_target"]

_log = get_logger("walg")
_SPECIAL = (layout.BACKUP_LABEL_PART, layout.PG_CONTROL_PART)
_TABLESPACE_MAP = "tablespace_map"

ProgressSink = Callable[[Mapping[str, StageProgress], int], None]


@dataclass(frozen=True)
class FetchResult:
    name: str
    target: str
    tablespaces: dict[str, str]


def parse_tablespace_remap(pairs: Sequence[str]) -> dict[str, str]:
    """``OID=/new/location`` (or ``/old/location=/new/location``) pairs into a mapping."""
    remap = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not os.path.isabs(new):
            raise ConfigError(
                f"bad tablespace mapping {pair!r}",
                hint="use OID=/absolute/new/location or /old/location=/new/location",
            )
        remap[old.rstrip("/") or old] = new
    return remap


def prepare_target(target: str) -> str:
    """Create ``target`` (mode 0700) or accept it if empty; refuse a non-empty one."""
    path = os.path.abspath(target)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise WalgError(f"{path} exists and is not a directory", "choose an empty directory")
        if os.listdir(path):
            raise WalgError(
                f"{path} is not empty; refusing to restore over existing files",
                hint="restore into an empty or new directory",
            )
    else:
        os.makedirs(path, mode=0o700)
    os.chmod(path, 0o700)
    return path


@dataclass(frozen=True)
class _Source:
    """One backup of the chain being restored, and what to take from it."""

    info: BackupInfo
    objects: list[ObjectRef]
    method: str
    encrypted: bool
    files: FilesMetadata | None
    selection: Selection | None  # None: everything (a full backup restored alone)
    skip_parts: frozenset[str] = frozenset()  # holding only files a partial restore leaves out

    @property
    def restored(self) -> bool:
        """Whether this is the backup being restored (not an older one of its chain)."""
        return self.selection is None or self.selection.everything

    def check_parts(self) -> None:
        present = {o.name for o in self.objects} | self.skip_parts
        completeness.check_parts_present(
            self.info.name, present, self.files, self.selection, restored=self.restored
        )

    def check_written(self, written: set[str]) -> None:
        """Every file this backup was to restore (pg_control aside) was restored."""
        expected = completeness.expected_files(self.files, self.selection)
        expected.discard(PG_CONTROL)
        completeness.check_written(self.info.name, expected, written)

    def data_objects(self) -> list[ObjectRef]:
        data = [
            o for o in self.objects
            if not o.name.startswith(_SPECIAL) and o.name not in self.skip_parts
        ]
        if self.selection is None or self.files is None:
            return data
        needed = parts_needed(self.selection, self.files.tar_file_sets)
        return data if needed is None else [o for o in data if o.name in needed]


def backup_fetch(
    settings: Settings,
    target: str,
    name: str,
    *,
    remap: Mapping[str, str] | None = None,
    progress: ProgressSink | None = None,
    recovery: RecoveryOptions | None = None,
    restore_only: Sequence[str] | None = None,
) -> FetchResult:
    """Restore backup ``name`` (or LATEST) into ``target`` — a delta with its chain: files
    from older backups as needed, then increments oldest to newest; with ``recovery``, also
    write the settings that make PostgreSQL recover from the WAL archive; with
    ``restore_only``, only those databases (walg.backup.partial)."""
    if recovery is not None:
        recovery.check()
    storage = open_storage(settings)
    storage.check_present()  # a missing file storage folder is an error, not an empty archive
    info = find_backup(storage, name)
    sources = [_without_tablespace_map(s) for s in
               _sources(storage, settings, _chain(storage, info), restore_only)]
    path = prepare_target(target)
    tablespaces = _tablespaces(info, path, remap or {})
    run = functools.partial(
        _run, settings, target=path, tablespaces=tablespaces, progress=progress,
        total=sum(s.info.sentinel.uncompressed_size for s in sources),
    )
    for source in sources[:-1]:
        source.check_written(run(source, source.data_objects()))
    last = sources[-1]
    written = run(last, last.data_objects())
    written |= run(last, _named(last.objects, layout.BACKUP_LABEL_PART))
    last.check_written(written)
    completeness.check_label_written(last.info.name, written)
    _ensure_wal_dir(path, last.info.sentinel.pg_version)
    if disable_previous(path):
        _log.info("disabled recovery settings an earlier backup-fetch left in the backup")
    if recovery is not None and recovery.requested:
        write_recovery(path, recovery, settings)
    for root in (path, *tablespaces.values()):
        _fsync_tree(root)
    _restore_control(path, last, lambda: run(last, _named(last.objects, layout.PG_CONTROL_PART)))
    fsync_dir(os.path.dirname(os.path.join(path, PG_CONTROL)))
    _log.info("backup fetched", backup=info.name, target=path, chain=len(sources))
    return FetchResult(info.name, path, tablespaces)


def _without_tablespace_map(source: _Source) -> _Source:
    """``source`` restoring no tablespace_map (WAL-G restores none: the links are made by
    :func:`_tablespaces`), wherever the backup keeps it (backup_label.tar or another part)."""
    selection = source.selection or Selection(source.info.name, everything=True)
    excluded = selection.excluded | {_TABLESPACE_MAP}
    return dataclasses.replace(
        source, selection=dataclasses.replace(selection, excluded=excluded)
    )


def _ensure_wal_dir(target: str, pg_version: int) -> None:
    """Create pg_wal (pg_xlog before PostgreSQL 10) if the backup had none: WAL-G leaves
    out a pg_wal that was a symlink (initdb -X), and PostgreSQL cannot start without it."""
    wal = os.path.join(target, "pg_xlog" if 0 < pg_version < 100000 else "pg_wal")
    if not os.path.lexists(wal):
        _log.info("the backup has no WAL directory; creating an empty one", path=wal)
        os.makedirs(os.path.join(wal, "archive_status"), mode=0o700)


def _restore_control(target: str, last: _Source, extract: Callable[[], set[str]]) -> None:
    """Extract pg_control.tar, the last thing written; if that fails or does not restore
    global/pg_control, leave no pg_control behind (the target must not look complete)."""
    try:
        if PG_CONTROL not in extract():
            raise IntegrityError(
                f"backup {last.info.name}: {layout.PG_CONTROL_PART} holds no {PG_CONTROL}",
                hint="the backup is incomplete or damaged; restore another backup",
            )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(target, PG_CONTROL))
        raise


def _chain(storage: Storage, info: BackupInfo) -> list[BackupInfo]:
    """``info`` and the backups it is a delta of, the full backup first."""
    found = {info.name: info}

    def delta_from(name: str) -> str | None:
        if name not in found:
            try:
                found[name] = find_backup(storage, name)
            except BackupNotFound as err:
                raise KeyError(name) from err
        return found[name].sentinel.delta_from

    chain = walk_bases(info.name, delta_from)
    chain.check(storage.url)
    return [found[name] for name in reversed(chain.names)]


def _sources(
    storage: Storage,
    settings: Settings,
    chain: list[BackupInfo],
    restore_only: Sequence[str] | None = None,
) -> list[_Source]:
    """Check every backup of the chain (objects, compression, key) before writing anything."""
    sources = []
    for info in chain:
        objects = _objects(storage, info)
        method = _method(objects, info)
        encrypted = _check_encryption(storage, settings, objects, info.sentinel.encrypted)
        files = read_files_metadata(storage, info.name)
        if files is None and len(chain) > 1:
            raise IntegrityError(
                f"{info.name} has no {layout.FILES_METADATA} and is part of a delta chain",
                hint="without it the chain's files cannot be put together; restore a full backup",
            )
        sources.append(_Source(info, objects, method, encrypted, files, None))
    if len(chain) > 1:
        plan = plan_restore([(s.info.name, s.files or FilesMetadata()) for s in sources])
        sources = [dataclasses.replace(s, selection=p) for s, p in zip(sources, plan, strict=True)]
    if restore_only is not None:
        sources = _partial(sources, restore_only)
    for source in sources:
        source.check_parts()
    return sources


def _partial(sources: list[_Source], keys: Sequence[str]) -> list[_Source]:
    """``sources`` leaving out the files --restore-only ``keys`` does not restore: those the
    restored backup's DatabasesByNames says belong elsewhere (its bases need none)."""
    from walg.backup.partial import plan_exclusions, skippable_parts

    last = sources[-1]
    excluded = plan_exclusions(last.info.name, last.files, keys)
    restricted = []
    for source in sources:
        selection = source.selection or Selection(source.info.name, everything=True)
        skip: frozenset[str] = frozenset()
        if source is last and source.files is not None and source.info.sentinel.compression:
            skip = skippable_parts(source.files.tar_file_sets, excluded)
        selection = dataclasses.replace(selection, excluded=excluded)
        restricted.append(dataclasses.replace(source, selection=selection, skip_parts=skip))
    return restricted


def _objects(storage: Storage, info: BackupInfo) -> list[ObjectRef]:
    prefix = layout.parts_prefix(info.name)
    listed: list[ObjectInfo] = list(storage.list_objects(prefix))
    names = sorted(o.name[len(prefix) :] for o in listed)
    if not names:
        raise IntegrityError(
            f"backup {info.name} has no objects in {prefix}",
            hint="the backup is incomplete or damaged; restore another backup",
        )
    return [ObjectRef(i + 1, prefix + n, n) for i, n in enumerate(names)]


def _named(objects: list[ObjectRef], label: str) -> list[ObjectRef]:
    return [o for o in objects if o.name.startswith(label)]


def _method(objects: list[ObjectRef], info: BackupInfo) -> str:
    exts = {o.name.split(".tar", 1)[1].lstrip(".") for o in objects}
    if len(exts) != 1:
        raise IntegrityError(f"backup {info.name} mixes compression methods: {sorted(exts)}")
    ext = exts.pop()
    method = compression.method_for_extension(ext)
    if method is None:
        raise IntegrityError(f"backup {info.name} has objects with unknown extension .{ext}")
    compression.check_readable(method, f"backup {info.name}")  # zstd... fail clearly here
    return method


def _check_encryption(
    storage: Storage, settings: Settings, objects: list[ObjectRef], recorded: bool | None
) -> bool:
    """Whether the backup's objects are encrypted: as its sentinel records (ours do), else
    guessed from the first object's first bytes (backups written by WAL-G), or taken as
    encrypted when a libsodium key is set (no magic to tell: WAL-G decrypts them all)."""
    if recorded is None and settings.crypto.libsodium:
        recorded = True
    if recorded is None:
        from walg.crypto import looks_encrypted

        with storage.read_object(objects[0].key) as stream:
            recorded = looks_encrypted(stream.read(64))
    encrypted = bool(recorded)
    if encrypted and not settings.crypto.enabled:
        raise CryptoError(
            f"{objects[0].key} is encrypted and no key is configured",
            hint="set WALG_PGP_KEY or WALG_PGP_KEY_PATH (and WALG_PGP_KEY_PASSPHRASE)",
        )
    return encrypted


def _tablespaces(info: BackupInfo, target: str, remap: Mapping[str, str]) -> dict[str, str]:
    spec = info.sentinel.spec
    recorded = spec.tablespaces if spec else {}
    known = set(recorded) | {location.rstrip("/") for location in recorded.values()}
    unused = sorted(set(remap) - known)
    if unused:  # a mistyped OID would otherwise restore to the original location
        raise ConfigError(
            f"--tablespace-map names {', '.join(unused)}, which backup {info.name} does not "
            f"have (its tablespaces: {', '.join(sorted(recorded)) or 'none'})",
            hint="map each tablespace by the OID or the location the backup recorded "
            "(`wal-g backup-list --detail` shows them)",
        )
    locations: dict[str, str] = {}
    links = os.path.join(target, "pg_tblspc")
    for oid, location in recorded.items():
        new = remap.get(oid) or remap.get(location.rstrip("/")) or location
        if os.path.exists(new) and os.listdir(new):
            raise WalgError(
                f"tablespace {oid} location {new} is not empty",
                hint="empty it, or map it elsewhere with --tablespace-map OID=/new/location",
            )
        os.makedirs(new, mode=0o700, exist_ok=True)
        link = os.path.join(links, oid)
        os.makedirs(links, mode=0o700, exist_ok=True)
        if os.path.lexists(link):  # never replace an entry (the target was empty)
            raise WalgError(f"{link} already exists", hint="restore into an empty directory")
        os.symlink(new, link)
        locations[oid] = new
    if locations:  # the links are durable before any data (and pg_control) is written
        fsync_dir(links)
        fsync_dir(target)
    return locations


def _run(
    settings: Settings,
    source: _Source,
    objects: list[ObjectRef],
    *,
    target: str,
    tablespaces: dict[str, str],
    progress: ProgressSink | None,
    total: int,
) -> set[str]:
    """Extract ``objects`` of ``source``; the names (relative to PGDATA) of what was written."""
    if not objects:
        return set()
    width = fetch_width(settings.concurrency, len(objects), os.cpu_count() or 1)
    on_progress = None if progress is None else (lambda p: progress(p, total))
    graph = fetch_graph(
        settings,
        objects,
        source.method,
        source.encrypted,
        target,
        tablespaces,
        width,
        files=source.files,
        select=source.selection,
    )
    try:
        runtime = ProcessRuntime(on_progress=on_progress, chaining=settings.concurrency.chaining)
        result = runtime.run(graph)
    except Cancelled as stopped:  # Ctrl-C or SIGTERM: the target holds part of a backup
        raise type(stopped)(stopped.msg, hint=interrupted_hint(target)) from None
    return {name for done in result.outputs["extract"] for name in done.files}


def interrupted_hint(target: str) -> str:
    """What to do after a backup-fetch into ``target`` was stopped half-way."""
    return (
        f"{target} holds a partial restore: empty it (or choose a new directory) before "
        "running backup-fetch again, which refuses a non-empty directory"
    )


def _fsync_tree(root: str) -> None:
    """fsync every directory below ``root`` (files were fsynced when written); symlinks
    are not followed, so tablespace locations are walked on their own."""
    for directory, _dirs, _files in os.walk(root):
        fsync_dir(directory)
