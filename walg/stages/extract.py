"""Extractor: writes the members of tar streams into the restore directory, safely.

Member names are accepted with and without WAL-G's leading '/'. A name that would land
outside the target (``..``, or a path through a symlink) is refused, and so is a symlink
member pointing outside PGDATA except where PostgreSQL itself keeps one. Files under
``pg_tblspc/<oid>/`` go to that tablespace's location. Every regular file is written,
CRC-32C checked against the backup's files metadata when it has one, and fsynced before
the part is reported done (all of a part's files at its end, so that the kernel writes
them back while later files are extracted, instead of one synchronous flush per file).
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import tarfile
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from walg.checksum import Crc32c
from walg.errors import IntegrityError
from walg.pipeline import Stage, WorkerContext
from walg.stages.chunks import Chunk, PartDone
from walg.stages.pipe import StreamFeeder

__all__ = ["Extractor", "destination", "member_name"]

_COPY = 1 << 20
_WRITEBACK = 32 << 20


def member_name(raw: str) -> str:
    """The member's path relative to PGDATA; raise IntegrityError if it is not clean."""
    name = raw.lstrip("/")
    parts = name.split("/")
    if name.endswith("/"):
        parts = parts[:-1]
    if not name or any(p in ("", ".", "..") for p in parts):
        raise IntegrityError(f"refusing tar member {raw!r}: it would land outside the target")
    return "/".join(parts)


def destination(name: str, target: str, tablespaces: Mapping[str, str]) -> tuple[str, str]:
    """(root, path) of member ``name``: inside ``target``, or inside a tablespace location
    for ``pg_tblspc/<oid>/...`` when that OID is in ``tablespaces`` (OID -> location)."""
    parts = name.split("/")
    if len(parts) > 2 and parts[0] == "pg_tblspc" and parts[1] in tablespaces:
        root = tablespaces[parts[1]]
        return root, os.path.join(root, *parts[2:])
    return target, os.path.join(target, *parts)


def _check_no_symlink_parents(path: str, root: str) -> None:
    """Refuse to write through a symlink planted by an earlier member."""
    current = os.path.dirname(path)
    while len(current) > len(root) and current.startswith(root):
        if os.path.islink(current):
            raise IntegrityError(f"refusing to write {path!r} through the symlink {current!r}")
        current = os.path.dirname(current)


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing this file's dirty pages now (asynchronously).

    With lots of RAM, Linux would otherwise keep a whole restore dirty in memory and write
    it all during the final fsyncs; starting writeback early overlaps the disk with the
    rest of the work, so the fsyncs find little left to do. (POSIX_FADV_DONTNEED starts
    writeback of dirty pages and drops only pages that are already clean.)
    """
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Extractor(Stage):
    """Input: the decrypted, decompressed :class:`Chunk` stream of each tar part (keyed).
    Output: :class:`PartDone` with ``meta['files']`` = names written.

    ``shared['files']`` may hold the backup's FilesMetadata to check CRC-32C values."""

    def __init__(self, target: str, tablespaces: dict[str, str]) -> None:
        self.target = os.path.abspath(target)
        self.tablespaces = tablespaces

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.expected = ctx.shared.get("files")
        self.active: dict[int, StreamFeeder] = {}

    def process(self, chunk: Chunk) -> Iterator[PartDone]:
        feeder = self.active.get(chunk.part)
        if feeder is None:
            feeder = StreamFeeder(functools.partial(self._extract, part=chunk.name), depth=4)
            self.active[chunk.part] = feeder
        feeder.feed(chunk.data)
        if chunk.last:
            del self.active[chunk.part]
            written = feeder.finish()
            yield PartDone(chunk.part, chunk.name, 0, {"files": written})

    def close(self) -> None:
        for feeder in getattr(self, "active", {}).values():
            feeder.abort()

    def _extract(self, stream: BinaryIO, part: str) -> list[str]:
        written: list[str] = []
        paths: list[str] = []
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    written.append(self._member(tar, member, part, paths))
        except tarfile.TarError as err:
            raise IntegrityError(f"{part} is not a valid tar stream: {err}") from err
        for path in paths:
            _fsync_path(path)
        return written

    def _member(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, part: str, paths: list[str]
    ) -> str:
        name = member_name(member.name)
        root, path = destination(name, self.target, self.tablespaces)
        _check_no_symlink_parents(path, root)
        if member.isdir():
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, member.mode & 0o7777 or 0o700)
        elif member.issym():
            self._symlink(name, member.linkname, path)
        elif member.isfile():
            source = tar.extractfile(member)
            assert source is not None
            self._write_file(name, source, path, member, part)
            paths.append(path)
        else:
            raise IntegrityError(f"{part}: unsupported tar member type for {name!r}")
        return name

    def _symlink(self, name: str, link: str, path: str) -> None:
        if posixpath.isabs(link) or ".." in link.split("/"):
            self.ctx.log.warning("restoring symlink pointing outside PGDATA", name=name, link=link)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        os.symlink(link, path)

    def _write_file(
        self, name: str, source: Any, path: str, member: tarfile.TarInfo, part: str
    ) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        crc = Crc32c()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(path, flags, member.mode & 0o7777 or 0o600)
        with os.fdopen(fd, "wb") as out:
            unflushed = 0
            while data := source.read(_COPY):
                crc.update(data)
                out.write(data)
                self.ctx.progress(nbytes=len(data))
                unflushed += len(data)
                if unflushed >= _WRITEBACK:
                    out.flush()
                    _start_writeback(fd)
                    unflushed = 0
            out.flush()
            _start_writeback(fd)
        os.utime(path, (member.mtime, member.mtime))
        self.ctx.progress(items=1)
        self._verify(name, crc.hexdigest(), part)

    def _verify(self, name: str, crc: str, part: str) -> None:
        if self.expected is None:
            return
        described = self.expected.files.get("/" + name) or self.expected.files.get(name)
        if described is not None and described.crc32c and described.crc32c != crc:
            raise IntegrityError(
                f"{name} from {part} does not match its checksum "
                f"(stored {described.crc32c}, restored {crc})",
                hint="the backup is corrupt; restore another backup",
            )
