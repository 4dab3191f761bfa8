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
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from walg.checksum import Crc32c
from walg.errors import IntegrityError
from walg.format.increment import MAGIC, IncrementHeader, read_header
from walg.format.meta import FileDescription, FilesMetadata
from walg.format.scan import PG_CONTROL, is_paged_file
from walg.pipeline import Stage, WorkerContext
from walg.postgres.pages import BLOCK_SIZE, RELSEG_SIZE
from walg.postgres.verify import PageVerifier, corrupt_blocks, segment_number
from walg.stages.chunks import Chunk, named_error
from walg.stages.extract import member_name
from walg.stages.tarfeed import TarFeed
from walg.stages.tarstream import Member

__all__ = ["Problem", "VerifiedPart", "Verifier"]

_CONTROL_MAX = 64 << 10  # pg_control is 8 KiB; keep no more than this of it
_RUN_PAGES = 128  # increment pages checksummed together
_INCREMENT_HEAD = len(MAGIC) + 8 + 4  # magic, uint64 file size, uint32 block count


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


class _Check:
    """A member body being checked; an IntegrityError becomes a problem of the file, and
    the rest of its body is then only read past."""

    def __init__(self, verifier: Verifier, state: _State, name: str, where: str) -> None:
        self.verifier = verifier
        self.state = state
        self.name = name
        self.where = where
        self.described = verifier.described(name)
        self.crc = Crc32c()
        self.broken = False

    def update(self, data: memoryview) -> None:
        if self.broken:
            return
        self.crc.update(data)
        self.state.file_bytes += len(data)
        self.verifier.ctx.progress(nbytes=len(data))
        try:
            self.take(data)
        except IntegrityError as err:
            self.fail(err.msg)

    def end(self) -> None:
        self.verifier.ctx.progress(items=1)
        if self.broken:
            return
        try:
            bad = self.finish()
        except IntegrityError as err:
            self.fail(err.msg)
            return
        self.state.checked += 1
        self.verifier.page_problems(self.name, self.where, bad, self.state)
        stored = None if self.described is None else self.described.crc32c
        if not stored:
            self.state.unchecked += 1
        elif stored != (read := self.crc.hexdigest()):
            message = f"{self.where} does not match its checksum (stored {stored}, read {read})"
            self.state.problems.append(Problem("bad_file", message, self.state.name, self.name))

    def fail(self, msg: str) -> None:
        self.broken = True
        message = msg if self.name in msg else f"{self.where}: {msg}"
        self.state.problems.append(Problem("bad_file", message, self.state.name, self.name))

    def take(self, data: memoryview) -> None:
        """Look at the next piece of the body."""

    def finish(self) -> list[int]:
        """The body is whole: the blocks (in the file) whose page checksum failed."""
        return []


class _WholeCheck(_Check):
    """A file stored whole: its CRC-32C, its pages, pg_control's bytes kept."""

    def __init__(self, verifier: Verifier, state: _State, name: str, where: str, size: int):
        super().__init__(verifier, state, name, where)
        since = verifier.page_since
        self.pages = None
        if since is not None and is_paged_file(name, size):
            self.pages = PageVerifier(name, since)
            state.pages += size // BLOCK_SIZE
        self.control = bytearray() if name == PG_CONTROL else None

    def take(self, data: memoryview) -> None:
        if self.pages is not None:
            self.pages.feed(data)
        if self.control is not None and len(self.control) < _CONTROL_MAX:
            self.control += data

    def finish(self) -> list[int]:
        if self.control is not None:
            self.state.control = bytes(self.control)
        return self.pages.bad if self.pages is not None else []


class _IncrementCheck(_Check):
    """An increment: its header parsed (as backup-fetch parses it), its pages checked at
    their block numbers, its length matched against the header."""

    def __init__(self, verifier: Verifier, state: _State, name: str, where: str):
        super().__init__(verifier, state, name, where)
        self.since = verifier.page_since
        self.base = segment_number(name) * RELSEG_SIZE
        self.gathered = bytearray()
        self.need = _INCREMENT_HEAD
        self.header: IncrementHeader | None = None
        self.index = 0  # pages of the increment taken so far
        self.run = bytearray()  # consecutive pages waiting to be checked
        self.run_first = 0
        self.bad: list[int] = []

    def take(self, data: memoryview) -> None:
        while data:
            if self.header is not None and self.index >= len(self.header.blocks):
                raise IntegrityError(f"{self.where} is longer than its increment header says")
            n = min(self.need - len(self.gathered), len(data))
            self.gathered += data[:n]
            data = data[n:]
            if len(self.gathered) == self.need:
                self._gathered()

    def _gathered(self) -> None:
        if self.header is None:
            if self.need == _INCREMENT_HEAD:  # magic, size, count: now the block numbers
                if self.gathered[: len(MAGIC)] != MAGIC:
                    read_header(io.BytesIO(bytes(self.gathered)), self.where)  # raises
                (count,) = struct.unpack_from("<I", self.gathered, _INCREMENT_HEAD - 4)
                self.need += 4 * count
                if count:
                    return
            self.header = read_header(io.BytesIO(bytes(self.gathered)), self.where)
            self.gathered, self.need = bytearray(), BLOCK_SIZE
            return
        blkno = self.header.blocks[self.index]
        self.index += 1
        if self.since is None:
            self.gathered = bytearray()
            return
        if self.run and (blkno != self.run_first + len(self.run) // BLOCK_SIZE
                         or len(self.run) >= _RUN_PAGES * BLOCK_SIZE):  # fmt: skip
            self._check_run()
        if not self.run:
            self.run_first = blkno
        self.run += self.gathered
        self.gathered = bytearray()
        self.state.pages += 1

    def _check_run(self) -> None:
        first = self.base + self.run_first
        assert self.since is not None
        self.bad += [b - self.base for b in corrupt_blocks(self.run, first, self.since)]
        self.run = bytearray()

    def finish(self) -> list[int]:
        if self.header is None or self.index < len(self.header.blocks) or self.gathered:
            raise IntegrityError(f"{self.where} is cut short (an incomplete increment)")
        if self.run:
            self._check_run()
        return self.bad


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
        self.active: dict[int, tuple[TarFeed, _State]] = {}
        self.dropping: set[int] = set()  # parts whose tar stream broke, until their end

    def process(self, chunk: Chunk) -> Iterator[VerifiedPart]:
        entry = self.active.get(chunk.part)
        if entry is None:
            state = _State(chunk.name)
            feed = TarFeed(chunk.name, functools.partial(self._begin, state=state))
            entry = self.active[chunk.part] = (feed, state)
        feed, state = entry
        if chunk.error is not None:
            state.problems.append(Problem("bad_object", chunk.error, chunk.name))
            state.failed = True
        elif not state.failed:
            try:
                feed.feed(chunk.data)
                if chunk.last:
                    feed.finish()
            except IntegrityError as err:
                message = named_error(state.name, err.msg)
                state.problems.append(Problem("bad_object", message, state.name))
                state.failed = True
        if chunk.last:
            del self.active[chunk.part]
            self.ctx.progress(items=1)
            yield state.report(chunk.part)

    def _begin(self, member: Member, state: _State) -> _Check | None:
        try:
            name = member_name(member.name)
        except IntegrityError as err:
            state.problems.append(Problem("bad_object", f"{state.name}: {err.msg}", state.name))
            return None
        state.files.append(name)
        if not member.isfile():
            return None
        where = f"{name} in {state.name}"
        described = self.described(name)
        stored = None if described is None else described.size
        if stored is not None and stored != member.size:
            message = f"{where} has {member.size} bytes, but its backup stored {stored}"
            state.problems.append(Problem("bad_file", message, state.name, name))
            return None
        if described is not None and described.is_incremented:
            return _IncrementCheck(self, state, name, where)
        return _WholeCheck(self, state, name, where, member.size)

    def described(self, name: str) -> FileDescription | None:
        if self.expected is None:
            return None
        files = self.expected.files
        return files.get("/" + name) or files.get(name)

    def page_problems(self, name: str, where: str, bad: list[int], state: _State) -> None:
        if not bad:
            return
        described = self.described(name)
        shown = ", ".join(str(b) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
        known = described is not None and described.corrupt_count > 0
        note = " (backup-push --verify found the cluster's copy corrupt too)" if known else ""
        message = f"{where}: {len(bad)} page(s) fail their checksum, block(s) {shown}{note}"
        state.problems.append(Problem("bad_pages", message, state.name, name))
