"""Extractor: writes the members of tar streams into the restore directory, safely.

Member names are accepted with and without WAL-G's leading '/'. A name that would land
outside the target (``..``, or a path through a symlink) is refused. Files under
``pg_tblspc/<oid>/`` go to that tablespace's location. Every regular file is written,
its size and CRC-32C checked against the backup's files metadata when it has one (see
filewriter for how bodies are written), and fsynced before the part is reported done.

No symlink leading outside the target is ever created (see :func:`symlink_action`): a
restore on the database host must never write into the production cluster's files.
pg_wal (or another directory whose contents backups leave out) stored as a link, as
older walg versions stored ``initdb -X`` clusters, becomes an empty directory;
tablespace links come from the tablespace map (fetch made them before extracting);
any other link leading outside is skipped with a warning naming it and its target.

When restoring a delta chain, ``select`` (a chain.Selection) says which members
of this backup are wanted; the others are read past. A member that the files metadata
marks IsIncremented is an increment: its pages are written into the file an older backup
of the chain restored (increment.apply_increment), its CRC-32C checked like any file's.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from walg.checksum import Crc32c
from walg.errors import IntegrityError
from walg.format.chain import Selection
from walg.format.increment import apply_increment, read_header, read_pages
from walg.format.meta import FileDescription, FilesMetadata
from walg.format.scan import contents_excluded
from walg.fsutil import fsync_path
from walg.pipeline import Stage, WorkerContext
from walg.stages.chunks import Chunk, ExtractedPart
from walg.stages.filewriter import FileWriter
from walg.stages.pipe import StreamFeeder
from walg.stages.tarstream import Member, TarStream

__all__ = ["Extractor", "destination", "member_name", "symlink_action"]


class _CheckedReader:
    """``read(n)`` over a member body (which has ``readinto``), with a CRC-32C of all read."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.crc = Crc32c()

    def read(self, count: int) -> bytes:
        buffer = bytearray(count)
        view = memoryview(buffer)
        got = 0
        while got < count and (n := self._body.readinto(view[got:])):
            got += n
        data = bytes(view[:got])
        self.crc.update(data)
        return data


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


def symlink_action(
    name: str, link: str, path: str, root: str, tablespaces: Mapping[str, str]
) -> str:
    """What to do with symlink member ``name`` -> ``link`` that would be created at
    ``path`` (inside ``root``): "dir" (make an empty directory instead), "mapped" (the
    tablespace map made it already), "skip" (it leads outside the target) or "link"."""
    if contents_excluded(name):
        return "dir"
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == "pg_tblspc" and parts[1] in tablespaces:
        return "mapped"
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), link))
    if posixpath.isabs(link) or not resolved.startswith(root.rstrip(os.sep) + os.sep):
        return "skip"
    return "link"


def _check_no_symlink_parents(path: str, root: str) -> None:
    """Refuse to write through a symlink planted by an earlier member."""
    current = os.path.dirname(path)
    while len(current) > len(root) and current.startswith(root):
        if os.path.islink(current):
            raise IntegrityError(f"refusing to write {path!r} through the symlink {current!r}")
        current = os.path.dirname(current)


@dataclass
class _Job:
    """One part being extracted: what it wrote, with its own aligned buffer."""

    part: str
    writer: FileWriter
    names: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


class Extractor(Stage):
    """Input: the decrypted, decompressed :class:`Chunk` stream of each tar part (keyed).
    Output: an :class:`ExtractedPart` per part, naming what it wrote.

    ``expected``: the backup's files metadata, to check sizes and CRC-32C values and to
    know increments; ``select``: the members wanted (None: all)."""

    def __init__(
        self,
        target: str,
        tablespaces: dict[str, str],
        expected: FilesMetadata | None = None,
        select: Selection | None = None,
    ) -> None:
        self.target = os.path.abspath(target)
        self.tablespaces = tablespaces
        self.expected = expected
        self.select = select

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.active: dict[int, StreamFeeder] = {}

    def process(self, chunk: Chunk) -> Iterator[ExtractedPart]:
        feeder = self.active.get(chunk.part)
        if feeder is None:
            feeder = StreamFeeder(functools.partial(self._extract, part=chunk.name), depth=4)
            self.active[chunk.part] = feeder
        feeder.feed(chunk.data)
        if chunk.last:
            del self.active[chunk.part]
            written = feeder.finish()
            yield ExtractedPart(chunk.part, chunk.name, tuple(written))

    def close(self) -> None:
        for feeder in getattr(self, "active", {}).values():
            feeder.abort()

    def _extract(self, stream: BinaryIO, part: str) -> list[str]:
        """Runs in the part's own thread (a worker may extract several parts at once), so
        everything mutable here is the part's own: its file writer and its file list."""
        job = _Job(part, FileWriter())
        try:
            tar = TarStream(stream, part)
            for member in tar.members():
                name = member_name(member.name)
                if self.select is None or self.select.wants(name):
                    job.names.append(self._member(tar, name, member, job))
        finally:
            job.writer.close()
        for path in job.paths:
            fsync_path(path)
        return job.names

    def _member(self, tar: TarStream, name: str, member: Member, job: _Job) -> str:
        part = job.part
        root, path = destination(name, self.target, self.tablespaces)
        _check_no_symlink_parents(path, root)
        if member.isdir():
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, member.mode & 0o7777 or 0o700)
        elif member.issym():
            self._symlink(name, member.linkname, path, root)
        elif member.isfile() and self._is_increment(name):
            self._apply_increment(name, tar.body, path, member, job)
            job.paths.append(path)
        elif member.isfile():
            self._write_file(name, tar.body, path, member, job)
            job.paths.append(path)
        else:
            raise IntegrityError(f"{part}: unsupported tar member type for {name!r}")
        return name

    def _symlink(self, name: str, link: str, path: str, root: str) -> None:
        action = symlink_action(name, link, path, root, self.tablespaces)
        if action == "mapped":
            return
        if action == "skip":
            self.ctx.log.warning(
                "not restoring a symlink that leads outside the target; "
                "recreate it by hand if the restored cluster needs it",
                name=name,
                link=link,
            )
            return
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if action == "dir":
            self.ctx.log.info("restoring a symlinked directory as an empty one", name=name)
            os.makedirs(path, mode=0o700, exist_ok=True)
        else:
            os.symlink(link, path)

    def _write_file(self, name: str, source: Any, path: str, member: Member, job: _Job) -> None:
        self._check_size(name, member.size, job.part)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        mode = member.mode & 0o7777 or 0o600
        crc = job.writer.write(path, source, mode, lambda n: self.ctx.progress(nbytes=n))
        os.utime(path, (member.mtime, member.mtime))
        self.ctx.progress(items=1)
        self._verify(name, crc, job.part)

    def _described(self, name: str) -> FileDescription | None:
        if self.expected is None:
            return None
        files = self.expected.files
        found: FileDescription | None = files.get("/" + name) or files.get(name)
        return found

    def _is_increment(self, name: str) -> bool:
        described = self._described(name)
        return described is not None and described.is_incremented

    def _apply_increment(self, name: str, body: Any, path: str, member: Member, job: _Job) -> None:
        """Apply the increment ``body`` to the file an older backup of the chain restored."""
        self._check_size(name, member.size, job.part)
        reader = _CheckedReader(body)
        header = read_header(reader, f"{name} in {job.part}")
        apply_increment(path, header, read_pages(reader, header, f"{name} in {job.part}"))
        if reader.read(1):
            raise IntegrityError(f"{name} in {job.part} is longer than its increment header says")
        os.utime(path, (member.mtime, member.mtime))
        self.ctx.progress(nbytes=header.length, items=1)
        self._verify(name, reader.crc.hexdigest(), job.part)

    def _check_size(self, name: str, size: int, part: str) -> None:
        """The member holds as many bytes as the backup stored for the file."""
        described = self._described(name)
        if described is not None and described.size is not None and described.size != size:
            raise IntegrityError(
                f"{name} from {part} has {size} bytes, but its backup stored {described.size}",
                hint="the backup is corrupt; restore another backup",
            )

    def _verify(self, name: str, crc: str, part: str) -> None:
        described = self._described(name)
        if described is not None and described.crc32c and described.crc32c != crc:
            raise IntegrityError(
                f"{name} from {part} does not match its checksum "
                f"(stored {described.crc32c}, restored {crc})",
                hint="the backup is corrupt; restore another backup",
            )
