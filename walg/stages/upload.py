"""Uploader: streams the chunks of each object into storage, one upload per object.

Keyed by part, so a worker sees an object's chunks in order; each object is uploaded by
a thread fed through a bounded queue (the storage pulls, the stage pushes). The object
appears in storage only when its last chunk has been written and the upload completed;
if anything fails, or the worker is cancelled, open uploads are aborted, never completed.

A worker does not wait for an object's upload to complete before it takes the next
object's chunks: up to :data:`FINISHING` ended uploads per worker complete in the
background (a small object's PutObject is sent only once its last byte is in), and each
is reported (:class:`PartDone`) only once it completed; the stream's end waits for all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from walg.config import Settings
from walg.errors import PipelineError
from walg.pipeline import Stage, WorkerContext
from walg.sizes import CHUNK
from walg.stages.chunks import Chunk, PartDone
from walg.stages.pipe import StreamFeeder
from walg.stages.throttle import Throttles
from walg.storage import Storage, open_storage

__all__ = ["COALESCE", "FINISHING", "Uploader"]

FINISHING = 1
"""Ended uploads a worker lets complete while it starts the next object: each holds at
most one object's unsent bytes (its last S3 part, or the whole of a small object)."""

COALESCE = CHUNK
"""Bytes of an object's chunks held before they are handed to its upload thread in one
piece: compressed chunks are small (~70 KiB of a 1 MiB chunk of pgbench data), and each
hand-over between threads cost ~0.14 ms, more than the bytes' own upload to file storage."""


@dataclass
class _Upload:
    """One object being uploaded: its thread, the bytes held back, the bytes stored."""

    feeder: StreamFeeder
    pieces: list[bytes | bytearray] = field(default_factory=list)
    held: int = 0
    stored: int = 0


class Uploader(Stage):
    """Input: :class:`Chunk` (keyed by part). Output: :class:`PartDone` per stored object,
    carrying the last chunk's report and the stored (compressed, encrypted) size.
    Uploads obey the run's network rate (:class:`Throttles`)."""

    def __init__(self, settings: Settings, folder: str, storage: Storage | None = None) -> None:
        self.settings = settings
        self.folder = folder  # key prefix of the objects, e.g. ".../tar_partitions/"
        self.given = storage  # a run in the calling process may reuse its storage (and client)

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.storage: Storage = self.given or open_storage(self.settings)
        self.limiter = Throttles.of(ctx).network_rate
        self.active: dict[int, _Upload] = {}
        self.finishing: list[tuple[StreamFeeder, PartDone]] = []  # oldest first

    def process(self, chunk: Chunk) -> Iterator[PartDone]:
        yield from self._completed(keep=FINISHING, wait=False)
        if chunk.part not in self.active:
            key = self.folder + chunk.name
            self.active[chunk.part] = _Upload(self._start(key))
        upload = self.active[chunk.part]
        if chunk.data:
            upload.pieces.append(chunk.data)
            upload.held += len(chunk.data)
            upload.stored += len(chunk.data)
            self.ctx.progress(nbytes=len(chunk.data))
            if upload.held >= COALESCE:
                self._feed(upload)
        if chunk.last:
            if chunk.report is None:  # close() aborts the upload: the backup could not list it
                raise PipelineError(f"{chunk.name}: its last chunk carries no tar part report")
            self._feed(upload)
            del self.active[chunk.part]
            upload.feeder.end()
            done = PartDone(chunk.part, chunk.name, upload.stored, chunk.report)
            self.finishing.append((upload.feeder, done))
            yield from self._completed(keep=FINISHING, wait=True)

    def _feed(self, upload: _Upload) -> None:
        """Hand the bytes held for ``upload`` to its thread, in one piece."""
        if not upload.pieces:
            return
        data = upload.pieces[0] if len(upload.pieces) == 1 else b"".join(upload.pieces)
        upload.pieces.clear()
        upload.held = 0
        if self.limiter is not None:
            self.limiter.take(len(data))
        upload.feeder.feed(data)

    def flush(self) -> Iterator[PartDone]:
        yield from self._completed(keep=0, wait=True)

    def _completed(self, keep: int, wait: bool) -> Iterator[PartDone]:
        """Report the ended uploads that completed, oldest first (raising the error of one
        that failed); with ``wait``, wait until at most ``keep`` are still running."""
        while self.finishing:
            feeder, done = self.finishing[0]
            if feeder.running and not (wait and len(self.finishing) > keep):
                return
            feeder.result()
            del self.finishing[0]
            self.ctx.progress(items=1)
            yield done

    def _start(self, key: str) -> StreamFeeder:
        storage = self.storage

        def upload(stream: BinaryIO) -> Any:
            storage.put_object(key, stream)

        return StreamFeeder(upload, depth=4, name=f"upload {key}")

    def close(self) -> None:
        for upload in getattr(self, "active", {}).values():
            upload.feeder.abort()
        for feeder, _ in getattr(self, "finishing", []):
            feeder.abort()  # its stream ended: this waits for its request to end
