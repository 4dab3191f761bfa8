"""backup-fetch: restore a base backup into an empty directory.

Data parts are downloaded, decrypted, decompressed and extracted in parallel; then
backup_label.tar; pg_control.tar last, so that an interrupted restore never looks like a
startable cluster. Files are fsynced as they are written and checked against the
backup's CRC-32C values; directories are fsynced at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from walg import compression
from walg.backup import layout
from walg.backup.catalog import BackupInfo, find_backup, read_files_metadata
from walg.backup.graphs import fetch_graph
from walg.backup.recovery import RecoveryOptions, write_recovery
from walg.config import Settings
from walg.errors import ConfigError, CryptoError, IntegrityError, NotImplementedYet, WalgError
from walg.fsutil import fsync_dir
from walg.logs import get_logger
from walg.pipeline import ProcessRuntime, StageProgress
from walg.stages.download import ObjectRef
from walg.storage import ObjectInfo, Storage, open_storage

__all__ = ["FetchResult", "backup_fetch", "parse_tablespace_remap", "prepare_target"]

_log = get_logger("walg")
_SPECIAL = (layout.BACKUP_LABEL_PART, layout.PG_CONTROL_PART)

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


def backup_fetch(
    settings: Settings,
    target: str,
    name: str,
    *,
    remap: Mapping[str, str] | None = None,
    progress: ProgressSink | None = None,
    recovery: RecoveryOptions | None = None,
) -> FetchResult:
    """Restore backup ``name`` (or LATEST) into ``target``; with ``recovery``, also write
    the settings that make PostgreSQL recover from the WAL archive."""
    if recovery is not None:
        recovery.check()
    storage = open_storage(settings)
    info = find_backup(storage, name)
    if info.sentinel.is_delta:
        raise NotImplementedYet(
            f"{info.name} is a delta backup; restoring deltas is not built yet",
            hint="restore a full backup, or use WAL-G for this one",
        )
    objects = _objects(storage, info)
    method = _method(objects, info)
    encrypted = _check_encryption(storage, settings, objects, info.sentinel.encrypted)
    path = prepare_target(target)
    tablespaces = _tablespaces(info, path, remap or {})
    files = read_files_metadata(storage, info.name)
    data = [o for o in objects if not o.name.startswith(_SPECIAL)]
    total = info.sentinel.uncompressed_size
    label = _named(objects, layout.BACKUP_LABEL_PART)
    control = _named(objects, layout.PG_CONTROL_PART)
    for batch in (data, label, control):  # pg_control last
        _run(settings, batch, method, encrypted, path, tablespaces, files, progress, total)
    if recovery is not None and recovery.requested:
        write_recovery(path, recovery, settings)
    _fsync_tree(path)
    _log.info("backup fetched", backup=info.name, target=path)
    return FetchResult(info.name, path, tablespaces)


def _objects(storage: Storage, info: BackupInfo) -> list[ObjectRef]:
    prefix = layout.parts_prefix(info.name)
    listed: list[ObjectInfo] = list(storage.list_objects(prefix))
    names = sorted(o.name[len(prefix) :] for o in listed)
    if not any(n.startswith(layout.PG_CONTROL_PART) for n in names):
        raise IntegrityError(
            f"backup {info.name} has no {layout.PG_CONTROL_PART} object",
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
    compression.extension(method)  # unsupported methods (zstd, ...) fail clearly here
    return method


def _check_encryption(
    storage: Storage, settings: Settings, objects: list[ObjectRef], recorded: bool | None
) -> bool:
    """Whether the backup's objects are encrypted: as its sentinel records (ours do), else
    guessed from the first object's first bytes (backups written by WAL-G)."""
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
    locations: dict[str, str] = {}
    for oid, location in (spec.tablespaces if spec else {}).items():
        new = remap.get(oid) or remap.get(location.rstrip("/")) or location
        if os.path.exists(new) and os.listdir(new):
            raise WalgError(
                f"tablespace {oid} location {new} is not empty",
                hint="empty it, or map it elsewhere with --tablespace-map OID=/new/location",
            )
        os.makedirs(new, mode=0o700, exist_ok=True)
        link = os.path.join(target, "pg_tblspc", oid)
        os.makedirs(os.path.dirname(link), mode=0o700, exist_ok=True)
        os.symlink(new, link)
        locations[oid] = new
    return locations


def _run(
    settings: Settings,
    objects: list[ObjectRef],
    method: str,
    encrypted: bool,
    target: str,
    tablespaces: dict[str, str],
    files: object,
    progress: ProgressSink | None,
    total: int,
) -> None:
    if not objects:
        return
    width = max(1, min(settings.concurrency.download, len(objects), os.cpu_count() or 1))
    on_progress = None if progress is None else (lambda p: progress(p, total))
    graph = fetch_graph(settings, objects, method, encrypted, target, tablespaces, width)
    shared = {} if files is None else {"files": files}
    ProcessRuntime(on_progress=on_progress).run(graph, shared=shared)


def _fsync_tree(root: str) -> None:
    """fsync every directory below ``root`` (files were fsynced when written)."""
    for directory, _dirs, _files in os.walk(root):
        fsync_dir(directory)
