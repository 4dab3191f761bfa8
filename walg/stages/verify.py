"""Verifier: backup-verify's sink, in the place of the extractor. It reads every tar part
to its end and writes nothing.

For each regular member it checks what the backup recorded in its files metadata: the
size, the CRC-32C of the stored bytes (a whole file, or an increment: its header and pages
are parsed too), and, when ``page_since`` is given (the backup's start LSN, on a cluster
with data checksums), the checksum of every page older than that LSN (pages at or after it
may have been read torn while PostgreSQL wrote them; WAL replay rewrites them). A delta's
increment holds only changed pages: those are the pages checked.

Problems are collected, not raised: a bad file is named and the next member is read; a
part whose stream cannot be read on (corrupt tar, an error chunk from an earlier stage)
is named and the next part goes on. Each part's :class:`VerifiedPart` says what was
checked and what was wrong; the flow (``walg.backup.verify``) puts them together.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from walg.checksum import Crc32c
from walg.errors import IntegrityError
from walg.format.increment import IncrementHeader, read_header, read_pages
from walg.format.meta import FileDescription, FilesMetadata
from walg.format.scan import PG_CONTROL, is_paged_file
from walg.pipeline import Stage, WorkerContext
from walg.postgres.pages import BLOCK_SIZE, RELSEG_SIZE
from walg.postgres.verify import PageVerifier, corrupt_blocks, segment_number
from walg.sizes import CHUNK
from walg.stages.chunks import Chunk, named_error
from walg.stages.extract import member_name
from walg.stages.pipe import StreamAborted, StreamFeeder
from walg.stages.tarstream import Member, TarStream

__all__ = ["Problem", "VerifiedPart", "Verifier"]

_CONTROL_MAX = 64 << 10  # pg_control is 8 KiB; keep no more than this of it
_RUN_PAGES = 128  # increment pages checksummed together


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a backup: ``kind`` (missing_object, bad_object, bad_file,
    bad_pages, missing_file, bad_metadata), a one-line ``message`` naming it, and the
    ``object`` (part name) and ``file`` (relative to PGDATA) concerned, when known."""

    kind: str
    message: str
    object: str | None = None
    file: str | None = None
    backup: str | None = None


@dataclass(frozen=True)
class VerifiedPart:
    """What reading one part found. ``files``: its members (relative to PGDATA);
    ``checked``: regular files read whole; ``unchecked``: those of them with no recorded
    CRC-32C (WAL-G's backups); ``pages``: pages whose checksum was verified;
    ``control``: the bytes of global/pg_control if this part holds it; ``failed``: the
    part could not be read to its end (its remaining files were not checked)."""

    part: int
    name: str
    files: tuple[str, ...] = ()
    checked: int = 0
    file_bytes: int = 0
    problems: tuple[Problem, ...] = ()
    unchecked: int = 0
    pages: int = 0
    control: bytes | None = None
    failed: bool = False


@dataclass
class _State:
    """One part being read (owned by its reading thread until it ends)."""

    name: str
    files: list[str] = field(default_factory=list)
    checked: int = 0
    file_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    unchecked: int = 0
    pages: int = 0
    control: bytes | None = None
    failed: bool = False

    def report(self, part: int) -> VerifiedPart:
        return VerifiedPart(
            part, self.name, tuple(self.files), self.checked, self.file_bytes, tuple(self.problems),
            self.unchecked, self.pages, self.control, self.failed,
        )  # fmt: skip


class _CrcReader:
    """``read(n)`` over a member body (``readinto``), with a CRC-32C of what was read."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.crc = Crc32c()
        self.count = 0

    def read(self, count: int) -> bytes:
        buffer = bytearray(count)
        view = memoryview(buffer)
        got = 0
        while got < count and (n := self._body.readinto(view[got:])):
            got += n
        data = bytes(view[:got])
        self.crc.update(data)
        self.count += got
        return data


class Verifier(Stage):
    """Input: the decrypted, decompressed :class:`Chunk` stream of each part (keyed), or
    an error chunk. Output: a :class:`VerifiedPart` per part.

    ``expected``: the backup's files metadata (sizes, CRC-32C values, increments), if it
    has one; ``page_since``: check page checksums of pages older than this LSN."""

    def __init__(self, expected: FilesMetadata | None, page_since: int | None) -> None:
        self.expected = expected
        self.page_since = page_since

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.active: dict[int, tuple[StreamFeeder, _State]] = {}

    def process(self, chunk: Chunk) -> Iterator[VerifiedPart]:
        entry = self.active.get(chunk.part)
        if chunk.error is not None:
            state = _State(chunk.name)
            if entry is not None:
                del self.active[chunk.part]
                entry[0].abort()
                state = entry[1]
            state.problems.append(Problem("bad_object", chunk.error, chunk.name))
            state.failed = True
            yield state.report(chunk.part)
            return
        if entry is None:
            state = _State(chunk.name)
            feeder = StreamFeeder(functools.partial(self._read_part, state=state), depth=4)
            entry = self.active[chunk.part] = (feeder, state)
        entry[0].feed(chunk.data)
        if chunk.last:
            del self.active[chunk.part]
            entry[0].finish()
            self.ctx.progress(items=1)
            yield entry[1].report(chunk.part)

    def close(self) -> None:
        for feeder, _state in getattr(self, "active", {}).values():
            feeder.abort()

    def _read_part(self, stream: BinaryIO, state: _State) -> None:
        """Runs in the part's own thread; never raises (problems go into ``state``)."""
        buffer = bytearray(CHUNK)
        try:
            tar = TarStream(stream, state.name)
            for member in tar.members():
                self._member(tar, member, state, buffer)
        except IntegrityError as err:
            message = named_error(state.name, err.msg)
            state.problems.append(Problem("bad_object", message, state.name))
            state.failed = True
        except StreamAborted:
            state.failed = True

    def _member(self, tar: TarStream, member: Member, state: _State, buffer: bytearray) -> None:
        try:
            name = member_name(member.name)
        except IntegrityError as err:
            state.problems.append(Problem("bad_object", f"{state.name}: {err.msg}", state.name))
            return
        state.files.append(name)
        if not member.isfile():
            return
        described = self._described(name)
        where = f"{name} in {state.name}"
        try:
            stored = None if described is None else described.size
            if stored is not None and stored != member.size:
                raise IntegrityError(
                    f"{where} has {member.size} bytes, but its backup stored {stored}"
                )
            if described is not None and described.is_incremented:
                crc = self._increment(name, where, tar.body, state)
            else:
                crc = self._whole(name, where, member, tar.body, state, buffer)
        except IntegrityError as err:
            message = err.msg if name in err.msg else f"{where}: {err.msg}"
            state.problems.append(Problem("bad_file", message, state.name, name))
            return
        finally:
            self.ctx.progress(items=1)
        state.checked += 1
        if described is None or not described.crc32c:
            state.unchecked += 1
        elif described.crc32c != crc:
            message = f"{where} does not match its checksum (stored {described.crc32c}, read {crc})"
            state.problems.append(Problem("bad_file", message, state.name, name))

    def _described(self, name: str) -> FileDescription | None:
        if self.expected is None:
            return None
        files = self.expected.files
        return files.get("/" + name) or files.get(name)

    def _whole(
        self, name: str, where: str, member: Member, body: Any, state: _State, buffer: bytearray
    ) -> str:
        """Read a whole file's body; its CRC-32C."""
        view = memoryview(buffer)
        crc = Crc32c()
        pages = None
        if self.page_since is not None and is_paged_file(name, member.size):
            pages = PageVerifier(name, self.page_since)
        control = bytearray() if name == PG_CONTROL else None
        while n := _fill(body, view):
            crc.update(view[:n])
            if pages is not None:
                pages.feed(view[:n])
            if control is not None and len(control) < _CONTROL_MAX:
                control += view[:n]
            state.file_bytes += n
            self.ctx.progress(nbytes=n)
        if control is not None:
            state.control = bytes(control)
        if pages is not None:
            state.pages += member.size // BLOCK_SIZE
            self._page_problems(name, where, pages.bad, state)
        return crc.hexdigest()

    def _increment(self, name: str, where: str, body: Any, state: _State) -> str:
        """Parse an increment (header and pages); its CRC-32C."""
        reader = _CrcReader(body)
        header = read_header(reader, where)
        bad = self._increment_pages(name, header, read_pages(reader, header, where), state)
        if reader.read(1):
            raise IntegrityError(f"{where} is longer than its increment header says")
        state.file_bytes += reader.count
        self.ctx.progress(nbytes=reader.count)
        self._page_problems(name, where, bad, state)
        return reader.crc.hexdigest()

    def _increment_pages(
        self, name: str, header: IncrementHeader, pages: Iterator[tuple[int, bytes]], state: _State
    ) -> list[int]:
        """Read the increment's pages; those (block numbers in the file) that fail."""
        since = self.page_since
        base = segment_number(name) * RELSEG_SIZE
        bad: list[int] = []
        run: list[bytes] = []
        first = 0
        for blkno, page in pages:
            if since is None:
                continue
            if run and (blkno != first + len(run) or len(run) >= _RUN_PAGES):
                bad += [b - base for b in corrupt_blocks(b"".join(run), base + first, since)]
                run = []
            if not run:
                first = blkno
            run.append(page)
            state.pages += 1
        if run and since is not None:
            bad += [b - base for b in corrupt_blocks(b"".join(run), base + first, since)]
        return bad

    def _page_problems(self, name: str, where: str, bad: list[int], state: _State) -> None:
        if not bad:
            return
        described = self._described(name)
        shown = ", ".join(str(b) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
        known = described is not None and described.corrupt_count > 0
        note = " (backup-push --verify found the cluster's copy corrupt too)" if known else ""
        message = f"{where}: {len(bad)} page(s) fail their checksum, block(s) {shown}{note}"
        state.problems.append(Problem("bad_pages", message, state.name, name))


def _fill(body: Any, view: memoryview) -> int:
    """Read into ``view`` until it is full or the body ends."""
    got = 0
    while got < len(view) and (n := body.readinto(view[got:])):
        got += n
    return got
