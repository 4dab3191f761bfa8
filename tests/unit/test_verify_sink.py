"""backup-verify's pieces: the verifying sink (sizes, CRC-32C, increments, page checksums,
problems collected rather than raised), the tolerant transform, the report's rules."""

from __future__ import annotations

import io
import struct
import tarfile
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from walg.backup.verify_report import VerifyReport, missing_files, missing_parts
from walg.checksum import Crc32c
from walg.errors import IntegrityError, VerificationFailed, WalgError
from walg.format.increment import encode_increment
from walg.format.meta import FileDescription, FilesMetadata
from walg.pipeline import WorkerContext
from walg.postgres.pages import BLOCK_SIZE, page_checksum
from walg.stages.chunks import Chunk
from walg.stages.transform import PartTransform
from walg.stages.verify import Problem, VerifiedPart, Verifier

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def ctx(stage: str) -> WorkerContext:
    return WorkerContext(stage, 0, 1, lambda *a: None, time.monotonic)


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def crc(data: bytes) -> str:
    c = Crc32c()
    c.update(data)
    return c.hexdigest()


def page(lsn: int, blkno: int, fill: int = 7) -> bytes:
    """A valid heap page with LSN ``lsn`` and a correct checksum for block ``blkno``."""
    body = bytearray(BLOCK_SIZE)
    struct.pack_into("<IIHHHHHHI", body, 0, lsn >> 32, lsn & 0xFFFFFFFF, 0, 0, 28, 8000,
                     BLOCK_SIZE, BLOCK_SIZE | 4, 0)
    body[8000:8100] = bytes([fill]) * 100
    struct.pack_into("<H", body, 8, page_checksum(body, blkno))
    return bytes(body)


def verify(data: bytes, files: FilesMetadata | None, since: int | None = None,
           error: str | None = None) -> VerifiedPart:
    stage = Verifier(files, since)
    stage.open(ctx("verify"))
    try:
        pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        out: list[VerifiedPart] = []
        for seq, piece in enumerate(pieces):
            last = seq == len(pieces) - 1 and error is None
            out += stage.process(Chunk(1, "part_001.tar", seq, piece, last))
        if error is not None:
            out += stage.process(Chunk(1, "part_001.tar", len(pieces), b"", True, error=error))
        (result,) = out
        return result
    finally:
        stage.close()


def described(data: bytes, **kw: Any) -> FileDescription:
    return FileDescription(EPOCH, size=len(data), crc32c=crc(data), **kw)


def test_good_files_pass_and_every_bad_one_is_named() -> None:
    """Every file is read; wrong CRC and wrong size are each named, the rest is counted."""
    good, bad, short = b"a" * 3000, b"b" * 3000, b"c" * 100
    files = FilesMetadata({"/good": described(good), "/bad": described(b"x" * 3000),
                           "/short": described(short + b"!")})
    result = verify(tar_bytes([("/good", good), ("/bad", bad), ("/short", short)]), files)
    assert result.files == ("good", "bad", "short")
    assert result.checked == 2
    assert [(p.kind, p.file) for p in result.problems] == [("bad_file", "bad"),
                                                           ("bad_file", "short")]
    assert "bad in part_001.tar does not match its checksum" in result.problems[0].message
    assert "has 100 bytes, but its backup stored 101" in result.problems[1].message
    assert not result.failed


def test_files_without_recorded_crcs_are_counted_unchecked() -> None:
    """WAL-G's metadata has no sizes or CRCs: the files are decoded and counted."""
    files = FilesMetadata({"/f": FileDescription(EPOCH)})
    result = verify(tar_bytes([("/f", b"data")]), files)
    assert (result.checked, result.unchecked, result.problems) == (1, 1, ())


def test_a_cut_stream_fails_the_part_with_what_was_read_before() -> None:
    """A tar cut in the middle of a member names the part; earlier files were checked."""
    data = tar_bytes([("/a", b"a" * 600), ("/b", b"b" * 6000)])
    result = verify(data[:2500], None)
    assert result.failed and result.files == ("a", "b") and result.checked == 1
    (problem,) = result.problems
    assert problem.kind == "bad_object"
    assert problem.message == "part_001.tar: the tar stream ends inside a member's data"


def test_an_error_chunk_from_upstream_is_the_parts_problem() -> None:
    """An error chunk (e.g. corrupt lz4) ends the part with that problem, named."""
    result = verify(tar_bytes([("/a", b"a" * 5000)]), None, error="corrupt lz4 data in part_001")
    assert result.failed
    assert result.problems == (Problem("bad_object", "corrupt lz4 data in part_001",
                                       "part_001.tar"),)


def test_page_checksums_of_old_pages_are_checked() -> None:
    """A page older than the start LSN with a wrong checksum is named by block; newer
    pages are not checked (they may be torn, WAL rewrites them)."""
    pages = [page(100, 0), page(100, 1), page(100, 2), page(900, 3)]
    damaged = bytearray(pages[1])
    damaged[8050] ^= 1
    torn = bytearray(pages[3])
    torn[8050] ^= 1
    data = pages[0] + bytes(damaged) + pages[2] + bytes(torn)
    result = verify(tar_bytes([("/base/5/16384", data)]), None, since=500)
    (problem,) = result.problems
    assert problem.kind == "bad_pages" and problem.file == "base/5/16384"
    assert "1 page(s) fail their checksum, block(s) 1" in problem.message
    assert result.pages == 4


def test_increment_pages_are_checked_with_their_block_numbers() -> None:
    """An increment is parsed; its pages are checked at their block numbers (segment 1)."""
    base = 131072
    carried = [(5, page(100, base + 5)), (6, page(100, base + 6)), (9, page(100, base + 9))]
    bad = bytearray(carried[1][1])
    bad[8010] ^= 1
    carried[1] = (6, bytes(bad))
    body = b"".join(encode_increment(10 * BLOCK_SIZE, carried))
    files = FilesMetadata({"/base/5/16384.1": described(body, is_incremented=True)})
    result = verify(tar_bytes([("/base/5/16384.1", body)]), files, since=500)
    (problem,) = result.problems
    assert "block(s) 6" in problem.message and result.pages == 3 and result.checked == 1


def test_a_broken_increment_is_named_and_reading_goes_on() -> None:
    """An increment with bad magic bytes is a bad file; the next member is still read."""
    files = FilesMetadata({"/base/5/1": described(b"nope" * 10, is_incremented=True)})
    result = verify(tar_bytes([("/base/5/1", b"nope" * 10), ("/PG_VERSION", b"15\n")]), files)
    assert result.problems[0].file == "base/5/1" and "not a WAL-G increment" in (
        result.problems[0].message)
    assert result.files == ("base/5/1", "PG_VERSION")


class _Failing:
    """A transform provider whose transforms fail on data containing b"bad"."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def new(self, name: str) -> Any:
        class T:
            def update(self, data: bytes) -> list[bytes]:
                if b"bad" in data:
                    raise IntegrityError(f"corrupt data in {name}")
                return [bytes(data)]

            def finish(self) -> list[bytes]:
                return []

            def abort(self) -> None: ...

        return T()


def test_tolerant_transform_ends_a_bad_part_and_goes_on() -> None:
    """A failing part ends with one error chunk; its later chunks are dropped; other parts
    pass; the non-tolerant transform raises."""
    stage = PartTransform(_Failing(), tolerant=True)
    stage.open(ctx("decompress"))
    out = []
    for chunk in [Chunk(1, "p1", 0, b"ok"), Chunk(2, "p2", 0, b"bad"), Chunk(2, "p2", 1, b"x"),
                  Chunk(1, "p1", 1, b"ok", True), Chunk(2, "p2", 2, b"y", True)]:
        out += stage.process(chunk)
    assert [(c.part, c.last, c.error) for c in out] == [
        (1, False, None), (2, True, "corrupt data in p2"), (1, False, None), (1, True, None)]
    strict = PartTransform(_Failing())
    strict.open(ctx("decompress"))
    with pytest.raises(IntegrityError):
        list(strict.process(Chunk(1, "p1", 0, b"bad")))


def test_missing_parts_and_files() -> None:
    """Parts TarFileSets names but storage lacks; files in no part, apart from those in a
    part that is missing or unreadable (counted instead)."""
    files = FilesMetadata(
        {"/a": FileDescription(EPOCH), "/b": FileDescription(EPOCH),
         "/c": FileDescription(EPOCH), "/s": FileDescription(EPOCH, is_skipped=True)},
        {"part_1.tar.lz4": ["/a"], "part_2.tar.lz4": ["/b"], "part_3.tar.lz4": ["/c"]},
    )
    assert missing_parts({"part_1.tar.lz4"}, files) == ["part_2.tar.lz4", "part_3.tar.lz4"]
    assert missing_parts({"x"}, None) == []
    assert missing_files(files, {"a"}, {"part_2.tar.lz4"}) == (["c"], 1)
    assert missing_files(None, set(), set()) == ([], 0)


def test_report_caps_error_lines_and_lists_all_in_json() -> None:
    report = VerifyReport("base_1", chain=["base_1"])
    for i in range(60):
        report.problem("bad_file", f"file {i} is bad", "base_1")
    lines = report.error_messages(limit=50)
    assert len(lines) == 51 and lines[-1].startswith("... and 10 more")
    doc = report.to_json()
    assert len(doc["problems"]) == 60 and doc["ok"] is False
    assert VerificationFailed("x").exit_code == 65


def test_replay_unavailable_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """--replay without walg.backup.replay: a one-line error before any work."""
    import importlib.util

    from walg.commands import backup_verify

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WalgError, match="--replay is not available"):
        backup_verify._replay_available()


class _Collect:
    def __init__(self, out: list[bytes]) -> None:
        self.out = out
        self.data = bytearray()

    def update(self, data: memoryview) -> None:
        self.data += data

    def end(self) -> None:
        self.out.append(bytes(self.data))


@pytest.mark.parametrize("piece", [1, 7, 512, 1000, 1 << 20])
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_tar_feed_reads_what_tarfile_wrote(piece: int, fmt: int) -> None:
    """Fed in pieces of any size, TarFeed sees the members and bodies tarfile wrote: long
    names, empty files, directories and links included."""
    from walg.stages.tarfeed import TarFeed

    long = "base/" + "x" * 150 + "/16384"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, body in [(long, b"a" * 9000), ("empty", b""), ("/PG_VERSION", b"15\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("pg_wal")
        link.type, link.linkname = tarfile.SYMTYPE, "/elsewhere/" + "y" * 120
        tar.addfile(link)
    data = out.getvalue()
    names: list[tuple[str, str]] = []
    bodies: list[bytes] = []

    def begin(member: Any) -> Any:
        names.append((member.name, member.linkname))
        return _Collect(bodies) if member.isfile() else None

    feed = TarFeed("t.tar", begin)
    for i in range(0, len(data), piece):
        feed.feed(data[i : i + piece])
    feed.finish()
    assert [n for n, _ in names] == [long, "empty", "/PG_VERSION", "pg_wal"]
    assert names[3][1] == "/elsewhere/" + "y" * 120
    assert bodies == [b"a" * 9000, b"", b"15\n"]
    cut = TarFeed("t.tar", begin)
    cut.feed(data[:2000])
    with pytest.raises(IntegrityError, match=r"t\.tar: the tar stream ends inside"):
        cut.finish()
