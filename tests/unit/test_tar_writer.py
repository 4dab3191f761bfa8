"""The tar composer writes standard tar streams, WAL-G style, consistent under change."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from walg.checksum import Crc32c
from walg.format.scan import Entry, Part, scan
from walg.stages.chunks import Chunk, TarPartReport
from walg.stages.tar_writer import CHUNK_SIZE, TarWriter


class Ctx:
    """The smallest stand-in for a WorkerContext (progress is counted, nothing shared)."""

    def __init__(self) -> None:
        self.shared: dict[str, object] = {}
        self.bytes = 0

    def progress(self, nbytes: int = 0, items: int = 0) -> None:
        self.bytes += nbytes


def run(part: Part) -> list[Chunk]:
    writer = TarWriter("lz4")
    ctx = Ctx()
    writer.open(ctx)  # type: ignore[arg-type]
    return list(writer.process(part))


def report(chunks: list[Chunk]) -> TarPartReport:
    """The report of the part: on its last chunk only."""
    assert all(c.report is None for c in chunks[:-1])
    assert chunks[-1].report is not None
    return chunks[-1].report


def test_part_is_a_readable_tar_with_walg_names(tmp_path: Path) -> None:
    """Concatenated chunks form a tar whose members are /-prefixed and byte-exact."""
    (tmp_path / "base" / "1").mkdir(parents=True)
    big = os.urandom(CHUNK_SIZE * 2 + 123)
    (tmp_path / "base" / "1" / "1259").write_bytes(big)
    (tmp_path / "PG_VERSION").write_bytes(b"15\n")
    os.symlink("/elsewhere", tmp_path / "link")
    part = Part(1, tuple(scan(str(tmp_path))))
    chunks = run(part)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].last and not any(c.last for c in chunks[:-1])
    assert {c.name for c in chunks} == {"part_001.tar.lz4"}
    stream = b"".join(bytes(c.data) for c in chunks)
    assert len(stream) % 512 == 0 and report(chunks).tar_size == len(stream)
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"/base", "/base/1", "/base/1/1259", "/PG_VERSION", "/link"}
        assert tar.extractfile(members["/base/1/1259"]).read() == big  # type: ignore[union-attr]
        assert members["/link"].issym() and members["/link"].linkname == "/elsewhere"
    crc = Crc32c()
    crc.update(big)
    stored = report(chunks).files["/base/1/1259"]
    assert stored.crc32c == crc.hexdigest() and stored.size == len(big)
    assert not stored.incremented and stored.corrupt_blocks == ()


def test_file_that_shrinks_is_padded_and_one_that_vanished_is_skipped(tmp_path: Path) -> None:
    """Header sizes come from the open file; a vanished file is simply absent."""
    (tmp_path / "a").write_bytes(b"abc")
    entries = (
        Entry("a", str(tmp_path / "a"), "file", size=10_000),  # planned bigger than it is now
        Entry("gone", str(tmp_path / "gone"), "file", size=50),
    )
    chunks = run(Part(1, entries))
    with tarfile.open(fileobj=io.BytesIO(b"".join(bytes(c.data) for c in chunks))) as tar:
        assert tar.getnames() == ["/a"]
        assert tar.extractfile("/a").read() == b"abc"  # type: ignore[union-attr]
    assert set(report(chunks).files) == {"/a"}


def test_chunk_buffers_are_used_again_only_once_nothing_holds_them() -> None:
    """The tar composer's buffer pool hands a buffer out again only when no chunk (nor any
    view of one) refers to it: a buffer still held downstream is never overwritten."""
    from walg.stages.tar_writer import _BufferPool

    pool = _BufferPool()
    first = pool.take()
    second = pool.take()
    assert second is not first  # first is still held
    first_id = id(first)
    del first
    again = pool.take()
    assert id(again) == first_id  # nothing held it: handed out again
    again[:5] = b"held!"
    view = memoryview(again)[:5]  # a later stage keeping a view of the chunk
    del again
    other = pool.take()
    assert id(other) != first_id and bytes(view) == b"held!"
    view.release()
    del view, other, second
    taken = [pool.take() for _ in range(_BufferPool.KEEP + 3)]  # all held: fresh ones
    assert len({id(b) for b in taken}) == len(taken)
    assert first_id in {id(b) for b in taken}
    assert len(pool._buffers) == _BufferPool.KEEP
