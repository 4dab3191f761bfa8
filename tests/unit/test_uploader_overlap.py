"""The uploader takes the next object's chunks while an ended upload completes, and reports
each object only once it is stored (issue 15: a small object's PutObject is sent only
once its last byte is in, and waiting for it stalled the compressors behind)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from walg.config import load
from walg.pipeline import WorkerContext
from walg.stages.chunks import Chunk, PartDone, TarPartReport
from walg.stages.upload import FINISHING, Uploader
from walg.storage.memory import MemoryStorage

FOLDER = "basebackups_005/base_000000010000000000000002/tar_partitions/"
REPORT = TarPartReport(files={}, tar_size=0)


class GatedStorage(MemoryStorage):
    """A memory storage whose uploads read their stream, then wait for ``gate``; ``fail``
    makes them raise instead of storing."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.fail = False
        self.in_flight = 0

    def _put(self, key: str, source: BinaryIO) -> None:
        data = source.read()
        self.in_flight += 1
        try:
            assert self.gate.wait(10), "the test never opened the gate"
            if self.fail:
                raise OSError("connection reset")
            super()._put(key, io.BytesIO(data))
        finally:
            self.in_flight -= 1


@pytest.fixture
def uploader(tmp_path: Path) -> Iterator[tuple[Uploader, GatedStorage]]:
    stage = Uploader(load({"WALG_FILE_PREFIX": str(tmp_path)}), FOLDER)
    stage.open(WorkerContext("upload", 0, 1, lambda *a: None, time.monotonic))
    storage = GatedStorage()
    stage.storage = storage
    try:
        yield stage, storage
    finally:
        storage.gate.set()
        stage.close()


def chunks(part: int, data: bytes) -> list[Chunk]:
    name = f"part_{part:03d}.tar.lz4"
    return [Chunk(part, name, 0, data[:10]), Chunk(part, name, 1, data[10:], True, REPORT)]


def feed(stage: Uploader, items: list[Chunk]) -> list[PartDone]:
    return [done for chunk in items for done in stage.process(chunk)]


def test_an_ended_upload_does_not_hold_up_the_next_object(
    uploader: tuple[Uploader, GatedStorage],
) -> None:
    """With part 1's upload still in flight, part 2's chunks are taken at once; part 1 is
    reported only once stored, then part 2 at the end of the stream, in order."""
    stage, storage = uploader
    assert FINISHING >= 1
    assert feed(stage, chunks(1, b"a" * 100)) == []  # returned: not waiting for the PUT
    assert feed(stage, chunks(2, b"b" * 50)[:1]) == []
    assert storage.in_flight == 1 and not storage.exists(FOLDER + "part_001.tar.lz4")
    storage.gate.set()
    done = feed(stage, chunks(2, b"b" * 50)[1:]) + list(stage.flush())
    assert [(d.part, d.stored_bytes) for d in done] == [(1, 100), (2, 50)]
    assert storage.read_bytes(FOLDER + "part_001.tar.lz4") == b"a" * 100
    assert storage.read_bytes(FOLDER + "part_002.tar.lz4") == b"b" * 50


def test_no_more_than_finishing_uploads_are_left_running(
    uploader: tuple[Uploader, GatedStorage],
) -> None:
    """Ending one more object than FINISHING waits for the oldest upload to complete."""
    stage, storage = uploader
    for part in range(1, FINISHING + 1):
        assert feed(stage, chunks(part, b"x" * 20)) == []
    ended = threading.Event()
    result: list[PartDone] = []

    def end_another() -> None:
        result.extend(feed(stage, chunks(FINISHING + 1, b"y" * 20)))
        ended.set()

    worker = threading.Thread(target=end_another, daemon=True)
    worker.start()
    assert not ended.wait(0.3)  # blocked: FINISHING uploads are still running
    storage.gate.set()
    assert ended.wait(10)
    assert result and result[0].part == 1


def test_a_failed_upload_of_an_ended_object_fails_the_stage(
    uploader: tuple[Uploader, GatedStorage],
) -> None:
    """An upload that fails after its stream ended is raised (by flush at the latest) and
    its object is neither stored nor reported."""
    stage, storage = uploader
    storage.fail = True
    assert feed(stage, chunks(1, b"a" * 100)) == []
    storage.gate.set()
    with pytest.raises(OSError, match="connection reset"):
        list(stage.flush())
    assert not storage.exists(FOLDER + "part_001.tar.lz4")


def test_close_waits_for_an_ended_upload(uploader: tuple[Uploader, GatedStorage]) -> None:
    """A stage closed (after a failure elsewhere) while an ended upload is in flight returns
    only once that request is over: nothing is written after the worker stopped."""
    stage, storage = uploader
    assert feed(stage, chunks(1, b"a" * 100)) == []
    threading.Timer(0.2, storage.gate.set).start()
    stage.close()
    assert storage.in_flight == 0


def test_small_chunks_reach_the_upload_thread_in_pieces_of_a_chunk(
    uploader: tuple[Uploader, GatedStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compressed chunks are small: the uploader holds them until it has a chunk's worth
    (COALESCE) and hands them over in one piece; the object is their bytes, in order."""
    from walg.stages import upload as upload_module
    from walg.stages.pipe import StreamFeeder

    stage, storage = uploader
    storage.gate.set()
    handed: list[int] = []
    real_feed = StreamFeeder.feed

    def counting_feed(self: StreamFeeder, data: bytes | bytearray) -> None:
        handed.append(len(data))
        real_feed(self, data)

    monkeypatch.setattr(StreamFeeder, "feed", counting_feed)
    pieces = [bytes([i]) * 70_000 for i in range(40)]  # 2.8 MB in 40 chunks
    chunks = [Chunk(1, "part_001.tar.lz4", i, piece) for i, piece in enumerate(pieces)]
    chunks.append(Chunk(1, "part_001.tar.lz4", 40, b"tail", True, REPORT))
    done = [d for chunk in chunks for d in stage.process(chunk)] + list(stage.flush())
    assert [d.stored_bytes for d in done] == [sum(map(len, pieces)) + 4]
    assert storage._get(FOLDER + "part_001.tar.lz4")[0] == b"".join(pieces) + b"tail"
    assert len(handed) == 3  # two full pieces of >= 1 MiB, then the rest with the tail
    assert all(size >= upload_module.COALESCE for size in handed[:-1])
