"""PostgreSQL's archive status files and walg's own "uploaded ahead" markers, in pg_wal.

PostgreSQL marks a finished segment ready for archiving with ``pg_wal/archive_status/<name>
.ready`` and renames it to ``.done`` once archive_command succeeded. walg never touches
those files. A segment that a ``wal-push`` uploaded in the background, ahead of its own
archive_command call, is recorded by a marker of walg's own::

    pg_wal/walg_data/walg_archive_status/<name>.done

holding two lines: the storage it was uploaded to (its identity, no credentials:
:meth:`walg.config.Settings.storage_identity`, which names the endpoint too) and the object
key. Rules that keep "no segment is marked done that is not stored" true:

- a marker is written only after the storage's put returned (the object is durable);
- it is written to a temporary name, fsynced, renamed, and the directory fsynced, so a
  marker is either absent or complete (a SIGKILL leaves at most a temporary file, which
  is never read as a marker and is swept later);
- a marker counts only if it is complete and names the storage configured now: after the
  user points walg at another storage (another prefix, or the same bucket at another
  endpoint), old markers are ignored and the segment is pushed. (Markers of S3 and GCS
  written before the identity named the endpoint never match: those segments are pushed
  again.)

The marker is consumed (removed) by the archive_command call for its segment. Markers
whose ``.ready`` file is gone (PostgreSQL archived the segment some other way, e.g. after
archive_command changed) are swept by later pushes, so none can outlive its segment and
vouch for a recycled name. pg_wal contents are never part of a base backup, so markers
do not travel to restored clusters.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from typing import Final

from walg.fsutil import fsync_dir, make_dirs

__all__ = ["MARKER_SUFFIX", "READY_SUFFIX", "TEMP_MAX_AGE", "ArchiveStatus"]

READY_SUFFIX: Final = ".ready"
MARKER_SUFFIX: Final = ".done"
TEMP_MAX_AGE: Final = 3600.0
"""Seconds after which a temporary marker file left by a killed push is removed."""

_TEMP_PREFIX: Final = ".tmp-"
_MAX_MARKER: Final = 4096  # bytes read from a marker: a storage identity and a key


def _entries(directory: str) -> list[str]:
    """The names in ``directory``; [] if it is missing or unreadable (all of this is best
    effort: at worst a segment is uploaded once more)."""
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _names(directory: str, suffix: str) -> list[str]:
    """Names of the entries in ``directory`` ending with ``suffix``, without it."""
    return [name[: -len(suffix)] for name in _entries(directory) if name.endswith(suffix)]


def marker_text(identity: str, key: str) -> str:
    """The content of a marker for an object ``key`` stored in the storage ``identity``."""
    if "\n" in identity or "\n" in key:
        raise ValueError("a storage identity or key with a newline cannot be recorded")
    return f"{identity}\n{key}\n"


class ArchiveStatus:
    """The archive status of the WAL directory ``wal_dir`` (the directory of ``%p``)."""

    def __init__(self, wal_dir: str) -> None:
        self.wal_dir = wal_dir or "."
        self.ready_dir = os.path.join(self.wal_dir, "archive_status")
        self.marker_dir = os.path.join(self.wal_dir, "walg_data", "walg_archive_status")

    @property
    def is_pg_wal(self) -> bool:
        """Whether this looks like PostgreSQL's pg_wal (it has an archive_status folder)."""
        return os.path.isdir(self.ready_dir)

    def ready(self) -> list[str]:
        """Names PostgreSQL has marked ready for archiving (in no particular order)."""
        return _names(self.ready_dir, READY_SUFFIX)

    def marked(self) -> set[str]:
        """Names that have a marker (complete or not: use :meth:`is_marked` to trust one)."""
        return set(_names(self.marker_dir, MARKER_SUFFIX))

    def _marker(self, name: str) -> str:
        return os.path.join(self.marker_dir, name + MARKER_SUFFIX)

    def is_marked(self, name: str, identity: str) -> bool:
        """Whether ``name`` has a complete marker saying it was stored in the storage
        ``identity``."""
        try:
            with open(self._marker(name), "rb") as marker:
                text = marker.read(_MAX_MARKER).decode("utf-8", "replace")
        except OSError:  # missing, or unreadable: then the segment is simply pushed
            return False
        lines = text.split("\n")
        return len(lines) == 3 and lines[2] == "" and lines[0] == identity and bool(lines[1])

    def take(self, name: str, identity: str) -> bool:
        """If ``name`` was uploaded ahead to ``identity``, remove its marker and say so."""
        if not self.is_marked(name, identity):
            return False
        self.unmark(name)
        return True

    def mark(self, name: str, identity: str, key: str) -> None:
        """Record that ``name`` is stored as ``key`` in ``identity``. Call only after
        the storage's put returned: the marker is durable when this returns."""
        data = marker_text(identity, key).encode()
        make_dirs(self.marker_dir, 0o700)
        temp = os.path.join(
            self.marker_dir, f"{_TEMP_PREFIX}{name}.{os.getpid()}.{os.urandom(4).hex()}"
        )  # os.urandom, not secrets: importing secrets loads OpenSSL (~4 ms per call)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self._marker(name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        fsync_dir(self.marker_dir)

    def unmark(self, name: str) -> None:
        """Remove the marker of ``name`` if there is one (best effort: a marker that
        cannot be removed is harmless once its segment is archived, as names never recur)."""
        with contextlib.suppress(OSError):
            os.unlink(self._marker(name))

    def sweep(self, ready: Iterable[str] | None = None, now: float | None = None) -> list[str]:
        """Remove markers whose ``.ready`` file is gone and temporary files older than
        TEMP_MAX_AGE; return the names whose markers were removed. ``ready`` is a listing
        of :meth:`ready` made earlier in this call, if there is one (PostgreSQL removes no
        ``.ready`` file while its archive_command runs)."""
        entries = _entries(self.marker_dir)
        if not entries:
            return []
        marked = {e[: -len(MARKER_SUFFIX)] for e in entries if e.endswith(MARKER_SUFFIX)}
        stale = sorted(marked - set(self.ready() if ready is None else ready)) if marked else []
        for name in stale:
            self.unmark(name)
        limit = (time.time() if now is None else now) - TEMP_MAX_AGE
        for temp in entries:
            if temp.startswith(_TEMP_PREFIX):
                path = os.path.join(self.marker_dir, temp)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mtime < limit:
                        os.unlink(path)
        return stale
