"""What goes into a base backup: walk PGDATA (and tablespaces), skip what PostgreSQL and
WAL-G skip, and plan the tar parts. The rules and the planning are pure functions."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from walg.postgres.pages import BLOCK_SIZE

__all__ = [
    "PG_CONTROL",
    "Entry",
    "Part",
    "contents_excluded",
    "is_excluded",
    "is_paged_file",
    "plan_parts",
    "scan",
]

PG_CONTROL = "global/pg_control"
_RELATION_FILE = re.compile(r"\d+(\.\d+)?")


def is_paged_file(name: str, size: int) -> bool:
    """Whether the file ``name`` (relative to PGDATA) is a relation data file made of pages."""
    parts = name.split("/")
    return (
        parts[0] in ("base", "pg_tblspc")
        and _RELATION_FILE.fullmatch(parts[-1]) is not None
        and size > 0
        and size % BLOCK_SIZE == 0
    )

# Directories kept empty: PostgreSQL recreates or ignores their contents (WAL-G's list and
# PostgreSQL's basebackup.c).
_CONTENT_EXCLUDED_TOP = frozenset(
    {
        "pg_wal",
        "pg_xlog",
        "pg_log",
        "log",
        "pg_dynshmem",
        "pg_notify",
        "pg_replslot",
        "pg_serial",
        "pg_stat_tmp",
        "pg_snapshots",
        "pg_subtrans",
    }
)
# Files skipped at the top of PGDATA. backup_label and tablespace_map come from
# pg_backup_stop() instead (a leftover of an old exclusive backup would be wrong).
_FILES_EXCLUDED_TOP = frozenset(
    {
        "postmaster.pid",
        "postmaster.opts",
        "postgresql.auto.conf.tmp",
        "current_logfiles.tmp",
        "recovery.conf",
        "recovery.signal",
        "standby.signal",
        "backup_label",
        "backup_label.old",
        "tablespace_map",
        "tablespace_map.old",
        "walg_restore.json",  # wal-g's restore_command configuration (may hold keys)
    }
)


@dataclass(frozen=True)
class Entry:
    """One thing to store. ``name`` is its path relative to PGDATA ('/'-separated),
    ``path`` where it is read from (tablespace files live outside PGDATA). With
    ``since_lsn`` set, a delta backup stores the file as an increment of its pages changed
    since that LSN (when every page header is valid; else whole)."""

    name: str
    path: str
    kind: str  # "file" | "dir" | "symlink"
    size: int = 0
    mtime: float = 0.0
    mode: int = 0o600
    target: str = ""  # symlinks only
    since_lsn: int | None = None


@dataclass(frozen=True)
class Part:
    """One tar part: its number (from 1) and the files in it, in order. ``label`` names
    the special parts (``pg_control.tar``, ``backup_label.tar``)."""

    number: int
    entries: tuple[Entry, ...]
    label: str = ""

    @property
    def tar_name(self) -> str:
        """``part_001.tar`` (or the label), without a compression extension."""
        return self.label or f"part_{self.number:03d}.tar"

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


def is_excluded(name: str, is_dir: bool) -> bool:
    """Whether ``name`` (relative to PGDATA) is left out of a backup.

    Excluded directories are still stored, empty; only their contents are skipped (that is
    decided by :func:`scan`, which does not descend into them).
    """
    parts = name.split("/")
    base = parts[-1]
    if base.startswith("pgsql_tmp") or base == "pg_internal.init":
        return True
    return len(parts) == 1 and not is_dir and base in _FILES_EXCLUDED_TOP


def contents_excluded(name: str) -> bool:
    """Whether ``name`` is a directory at the top of PGDATA stored empty (pg_wal, ...)."""
    return "/" not in name and name in _CONTENT_EXCLUDED_TOP


def scan(pgdata: str, tablespaces: dict[str, str] | None = None) -> Iterator[Entry]:
    """Walk ``pgdata`` and yield every entry to store, in a stable order.

    Symlinks under pg_tblspc/ whose names are in ``tablespaces`` (OID -> location) are
    followed: their files are yielded under ``pg_tblspc/<oid>/...``. A directory stored
    empty (pg_wal, ...) that is a symlink (``initdb -X``) is stored as an empty directory,
    as pg_basebackup does: a restore must never point at the original's WAL. Other
    symlinks are stored as symlinks. Files that vanish during the walk are skipped.
    """
    yield from _walk(pgdata, "", tablespaces or {})


def _walk(directory: str, prefix: str, tablespaces: dict[str, str]) -> Iterator[Entry]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for base in names:
        name = f"{prefix}{base}"
        path = os.path.join(directory, base)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) and prefix == "pg_tblspc/" and base in tablespaces:
            yield Entry(name, path, "dir", mtime=st.st_mtime, mode=0o700)
            yield from _walk(tablespaces[base], name + "/", tablespaces)
        elif stat.S_ISLNK(st.st_mode) and contents_excluded(name):
            yield Entry(name, path, "dir", mtime=st.st_mtime, mode=0o700)
        elif stat.S_ISLNK(st.st_mode):
            if not is_excluded(name, False):
                yield Entry(name, path, "symlink", mtime=st.st_mtime, target=os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            if is_excluded(name, True):
                continue
            yield Entry(name, path, "dir", mtime=st.st_mtime, mode=stat.S_IMODE(st.st_mode))
            if not contents_excluded(name):
                yield from _walk(path, name + "/", tablespaces)
        elif stat.S_ISREG(st.st_mode) and not is_excluded(name, False):
            mode = stat.S_IMODE(st.st_mode)
            yield Entry(name, path, "file", st.st_size, st.st_mtime, mode)


def plan_parts(entries: Iterable[Entry], threshold: int) -> list[Part]:
    """Cut files into parts of about ``threshold`` bytes, in order; a file is never split,
    so a part holding one large file may be larger. Directories and symlinks go in the
    first part, so that extraction creates them early. pg_control is not planned here:
    it goes into its own part after all others are stored."""
    entries = [e for e in entries if e.name != PG_CONTROL]
    head = [e for e in entries if e.kind != "file"]
    parts: list[list[Entry]] = [head]
    filled = 0
    for entry in (e for e in entries if e.kind == "file"):
        if filled and filled + entry.size > threshold:
            parts.append([])
            filled = 0
        parts[-1].append(entry)
        filled += entry.size
    return [Part(i + 1, tuple(p)) for i, p in enumerate(parts) if p]
