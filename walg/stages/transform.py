"""Per-object streaming transforms as keyed stages: compress, encrypt, decrypt, decompress.

A keyed stage sees each object's chunks in order on one worker, so it can keep one
transform (a compressor, a gpg process) per object and emit its output as chunks of the
same object. A :class:`TransformProvider` builds the per-worker resources in ``open``
(e.g. a private gpg home) and a fresh :class:`Transform` per object.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from walg.errors import CryptoError, IntegrityError
from walg.pipeline import Stage, WorkerContext
from walg.stages.chunks import Chunk, named_error

__all__ = ["PartTransform", "Transform", "TransformProvider"]


class Transform(Protocol):
    """One object's stream transform. Outputs may be empty; their sizes should be bounded
    (a decompressor must not turn one chunk into gigabytes at once)."""

    def update(self, data: bytes | bytearray) -> Iterable[bytes]: ...

    def finish(self) -> Iterable[bytes]: ...

    def abort(self) -> None: ...


class TransformProvider(Protocol):
    """Builds transforms; picklable before ``open``, which runs in the worker."""

    def open(self) -> None: ...

    def new(self, name: str) -> Transform: ...

    def close(self) -> None: ...


class PartTransform(Stage):
    """Input and output: :class:`Chunk` streams, keyed by part; ``last`` and ``report`` pass
    through; the output stream is renumbered from 0.

    ``tolerant`` (backup-verify): an object the transform rejects (corrupt, undecryptable)
    ends early with an error chunk naming it, the rest of its input is dropped, and the
    other objects go on; error chunks from upstream pass through."""

    def __init__(self, provider: TransformProvider, tolerant: bool = False) -> None:
        self.provider = provider
        self.tolerant = tolerant

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.active: dict[int, tuple[Transform, list[int]]] = {}
        self.dropping: set[int] = set()  # parts that failed here, until their last chunk
        self.provider.open()

    def process(self, chunk: Chunk) -> Iterator[Chunk]:
        if not self.tolerant:
            yield from self._transform(chunk)
            return
        if chunk.part in self.dropping:
            if chunk.last:
                self.dropping.discard(chunk.part)
            return
        if chunk.error is not None:
            entry = self.active.pop(chunk.part, None)
            if entry is not None:
                entry[0].abort()
            yield chunk
            return
        try:
            yield from self._transform(chunk)
        except (IntegrityError, CryptoError) as err:
            transform, seq = self.active.pop(chunk.part, (None, [0]))
            if transform is not None:
                transform.abort()
            if not chunk.last:
                self.dropping.add(chunk.part)
            yield Chunk(
                chunk.part, chunk.name, seq[0], b"", True, error=named_error(chunk.name, err.msg)
            )

    def _transform(self, chunk: Chunk) -> Iterator[Chunk]:
        if chunk.part not in self.active:
            self.active[chunk.part] = (self.provider.new(chunk.name), [0])
        transform, seq = self.active[chunk.part]
        if chunk.data:
            self.ctx.progress(nbytes=len(chunk.data))
            for out in transform.update(chunk.data):
                if out:
                    yield Chunk(chunk.part, chunk.name, seq[0], out)
                    seq[0] += 1
        if chunk.last:
            tail = b"".join(transform.finish())
            del self.active[chunk.part]
            yield Chunk(chunk.part, chunk.name, seq[0], tail, True, chunk.report)
            self.ctx.progress(items=1)

    def close(self) -> None:
        for transform, _ in getattr(self, "active", {}).values():
            transform.abort()
        self.provider.close()
