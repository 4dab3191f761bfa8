"""Downloader: reads stored objects and emits their bytes as ordered chunks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from walg.config import Settings
from walg.errors import IntegrityError, ObjectNotFound
from walg.pipeline import Stage, WorkerContext
from walg.stages.chunks import Chunk, named_error
from walg.stages.tar_writer import CHUNK_SIZE
from walg.stages.throttle import Throttles
from walg.storage import Storage, open_storage

__all__ = ["Downloader", "ObjectRef"]


@dataclass(frozen=True)
class ObjectRef:
    """An object to fetch: its number (routing key downstream), key and short name."""

    part: int
    key: str
    name: str


class Downloader(Stage):
    """Input: :class:`ObjectRef`. Output: the object's :class:`Chunk` stream (last flagged).

    Reads resume after transient errors (storage base); a missing object is an error,
    unless ``tolerant`` (backup-verify): then a missing or unreadable object ends its
    stream with an error chunk (see :class:`Chunk`) and the others go on."""

    def __init__(self, settings: Settings, tolerant: bool = False) -> None:
        self.settings = settings
        self.tolerant = tolerant

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.storage: Storage = open_storage(self.settings)
        self.limiter = Throttles.of(ctx).network_rate

    def process(self, ref: ObjectRef) -> Iterator[Chunk]:
        if not self.tolerant:
            yield from self._read(ref)
            return
        seq = [0]
        try:
            for chunk in self._read(ref):
                seq[0] = chunk.seq + 1
                yield chunk
        except (ObjectNotFound, IntegrityError) as err:
            yield Chunk(ref.part, ref.name, seq[0], b"", True, error=named_error(ref.key, err.msg))

    def _read(self, ref: ObjectRef) -> Iterator[Chunk]:
        seq = 0
        with self.storage.read_object(ref.key) as stream:
            while True:
                data = stream.read(CHUNK_SIZE)
                if self.limiter is not None and data:
                    self.limiter.take(len(data))
                self.ctx.progress(nbytes=len(data))
                last = len(data) == 0
                if data or last:
                    yield Chunk(ref.part, ref.name, seq, data, last)
                    seq += 1
                if last:
                    break
        self.ctx.progress(items=1)
