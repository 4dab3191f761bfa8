"""Module-level stages used by the pipeline tests (factories must be picklable)."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from walg.pipeline import Stage, WorkerContext


class Numbers(Stage):
    """Source: the integers below ``n``, sharded over the workers (or forever if n < 0)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    def generate(self) -> Iterator[int]:
        i = self.ctx.index
        while self.n < 0 or i < self.n:
            yield i
            i += self.ctx.workers


class Items(Stage):
    """Source: a fixed list of items, emitted by worker 0 only."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def open(self, ctx: WorkerContext) -> None:
        self.first = ctx.index == 0

    def generate(self) -> list[Any]:
        return list(self.items) if self.first else []


class Affine(Stage):
    """x -> a*x + b."""

    def __init__(self, a: int = 1, b: int = 0) -> None:
        self.a, self.b = a, b

    def process(self, item: int) -> Iterator[int]:
        yield self.a * item + self.b


class Repeat(Stage):
    """Emit each item (item % k) times: 0..k-1 outputs per input."""

    def __init__(self, k: int) -> None:
        self.k = k

    def process(self, item: int) -> list[int]:
        return [item] * (item % self.k)


class Total(Stage):
    """Sum everything; emit the sum at end of stream."""

    def open(self, ctx: WorkerContext) -> None:
        self.total = 0

    def process(self, item: int) -> None:
        self.total += item

    def flush(self) -> list[int]:
        return [self.total]


class Blobs(Stage):
    """Source: ``count`` pseudo-random byte strings of ``size`` bytes."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    def generate(self) -> Iterator[bytes]:
        for i in range(self.ctx.index, self.count, self.ctx.workers):
            seed = hashlib.sha256(str(i).encode()).digest()
            yield (seed * (self.size // len(seed) + 1))[: self.size]


class Digest(Stage):
    """bytes -> (sha256 hex, length), reporting progress."""

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    def process(self, item: bytes) -> Iterator[tuple[str, int]]:
        self.ctx.progress(nbytes=len(item), items=1)
        yield hashlib.sha256(item).hexdigest(), len(item)


class Boom(ValueError):
    """A distinctive exception type to check it survives the trip to the parent."""


class FailAfter(Stage):
    """Pass items through; raise Boom on the ``n``-th one (after sleeping ``delay``)."""

    def __init__(self, n: int, delay: float = 0.0) -> None:
        self.n, self.delay = n, delay

    def open(self, ctx: WorkerContext) -> None:
        self.seen = 0

    def process(self, item: Any) -> Iterator[Any]:
        self.seen += 1
        if self.seen >= self.n:
            time.sleep(self.delay)
            raise Boom(f"boom at item {self.seen}")
        yield item


class Slow(Stage):
    """Pass items through slowly (keeps upstream queues full)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def process(self, item: Any) -> Iterator[Any]:
        time.sleep(self.delay)
        yield item


class KillSelf(Stage):
    """Die by ``signum`` (or exit with ``code``) on the ``n``-th item, reporting nothing."""

    def __init__(self, n: int, signum: int = signal.SIGKILL, code: int | None = None) -> None:
        self.n, self.signum, self.code = n, signum, code

    def open(self, ctx: WorkerContext) -> None:
        self.seen = 0

    def process(self, item: Any) -> Iterator[Any]:
        self.seen += 1
        if self.seen >= self.n:
            if self.code is not None:
                os._exit(self.code)
            os.kill(os.getpid(), self.signum)
            time.sleep(60)
        yield item


class Tracked(Stage):
    """Record open/close and the worker's pid in ``folder``; pass items through."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def open(self, ctx: WorkerContext) -> None:
        self.name = f"{ctx.stage}-{ctx.index}"
        (self.folder / f"{self.name}.pid").write_text(str(os.getpid()))
        (self.folder / f"{self.name}.open").touch()

    def process(self, item: Any) -> Iterator[Any]:
        yield item

    def close(self) -> None:
        (self.folder / f"{self.name}.closed").touch()


class TrackedForever(Tracked):
    """A tracked source that never ends."""

    def generate(self) -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1


class Unpicklable(Exception):
    """An exception that cannot be rebuilt from its pickle (required argument)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


class RaiseUnpicklable(Stage):
    def process(self, item: Any) -> Iterator[Any]:
        raise Unpicklable(1, 2)
        yield item


class Chatty(Stage):
    """Log one event per item, with the item bound."""

    def open(self, ctx: WorkerContext) -> None:
        self.log = ctx.log

    def process(self, item: Any) -> Iterator[Any]:
        self.log.info("saw item", item=item, obj=object())
        structlog.get_logger().debug("hidden unless debug")
        yield item


class FailOpen(Stage):
    """open() raises; close() must still run."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def open(self, ctx: WorkerContext) -> None:
        raise RuntimeError("cannot connect")

    def process(self, item: Any) -> Iterator[Any]:
        yield item

    def close(self) -> None:
        (self.folder / "failopen.closed").touch()


def first_of(item: Any) -> int:
    """Key function: the first element of a tuple item."""
    return int(item[0])


def modulo_key(item: int) -> int:
    """Key function for integer items."""
    return int(item)


class Pairs(Stage):
    """Source: (key, seq) for ``keys`` keys and ``per_key`` sequence numbers, interleaved."""

    def __init__(self, keys: int, per_key: int) -> None:
        self.keys, self.per_key = keys, per_key

    def generate(self) -> Iterator[tuple[int, int]]:
        for seq in range(self.per_key):
            for key in range(self.keys):
                yield key, seq


class TagWorker(Stage):
    """(key, seq) -> (key, seq, worker index)."""

    def open(self, ctx: WorkerContext) -> None:
        self.index = ctx.index

    def process(self, item: tuple[int, int]) -> Iterator[tuple[int, int, int]]:
        yield item[0], item[1], self.index


class CountShared(Stage):
    """Add 1 to the shared counter ``ctx.shared['counter']`` per item (under its lock)."""

    def open(self, ctx: WorkerContext) -> None:
        self.counter = ctx.shared["counter"]

    def process(self, item: Any) -> Iterator[Any]:
        with self.counter.get_lock():
            self.counter.value += 1
        yield item


class FailClose(Tracked):
    """A tracked pass-through stage whose close() raises after recording itself."""

    def close(self) -> None:
        super().close()
        raise OSError("cannot release the handle")


class Spin(Stage):
    """Burn ``seconds`` of CPU per item in process(), then pass it on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def process(self, item: Any) -> Iterator[Any]:
        until = time.thread_time() + self.seconds
        while time.thread_time() < until:
            pass
        yield item
