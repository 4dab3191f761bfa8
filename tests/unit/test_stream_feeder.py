"""The push-to-pull bridge used by uploaders and extractors never hangs or lies."""

from __future__ import annotations

import hashlib
import threading
from typing import BinaryIO

import pytest

from walg.stages.pipe import StreamAborted, StreamFeeder


def digest(stream: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(7777):
        h.update(chunk)
    return h.hexdigest()


def test_fed_chunks_arrive_in_order() -> None:
    """The consumer reads exactly the concatenation of the fed chunks."""
    chunks = [bytes([i]) * (1000 + i * 37) for i in range(200)]
    feeder = StreamFeeder(digest, depth=2)
    for chunk in chunks:
        feeder.feed(chunk)
    assert feeder.finish() == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_consumer_failure_surfaces_without_blocking_the_producer() -> None:
    """If the consumer dies early, feed() keeps going (drained) and the error is raised."""

    def fail(stream: BinaryIO) -> None:
        stream.read(10)
        raise OSError("storage went away")

    feeder = StreamFeeder(fail, depth=1)
    with pytest.raises(OSError, match="storage went away"):
        for _ in range(1000):
            feeder.feed(b"x" * 4096)
        feeder.finish()


def test_abort_makes_the_consumer_fail_not_finish() -> None:
    """After abort() the consumer's read raises, so a cut stream is never taken as whole."""
    seen: list[BaseException] = []
    started = threading.Event()

    def consume(stream: BinaryIO) -> None:
        started.set()
        try:
            while stream.read(100):
                pass
        except BaseException as exc:
            seen.append(exc)
            raise

    feeder = StreamFeeder(consume, depth=2)
    feeder.feed(b"partial")
    started.wait(5)
    feeder.abort(wait=5)
    assert len(seen) == 1 and isinstance(seen[0], StreamAborted)


def test_consumer_that_stops_early_does_not_block() -> None:
    """A consumer that returns before the end (trailing padding) leaves feed() unblocked."""
    feeder = StreamFeeder(lambda s: s.read(5), depth=1)
    for _ in range(50):
        feeder.feed(b"0123456789")
    assert feeder.finish() == b"01234"
