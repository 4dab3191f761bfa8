"""The shared-memory channel between processes: bounded, exact, end of stream counted."""

from __future__ import annotations

import hashlib
from typing import Any

import multiprocess
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walg.pipeline import Channel, EndOfStream

CTX = multiprocess.get_context("fork")


def blob(i: int, size: int) -> bytes:
    seed = hashlib.sha256(f"{i}".encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def produce(ch: Channel, tag: int, sizes: list[int]) -> None:
    for i, size in enumerate(sizes):
        ch.put((tag, i, blob(tag * 100_000 + i, size)))
    ch.put_end()


def consume(ch: Channel, out: Any) -> None:
    got = []
    while True:
        try:
            tag, i, data = ch.get()
        except EndOfStream:
            break
        got.append((tag, i, hashlib.sha256(data).hexdigest(), len(data)))
    out.put(got)


def run_mpmc(sizes: list[int], producers: int, consumers: int, slots: int, slot_size: int) -> None:
    ch = Channel(CTX, slots, slot_size, expected_ends=producers)
    results = CTX.Queue()
    procs = [CTX.Process(target=produce, args=(ch, t, sizes)) for t in range(producers)]
    procs += [CTX.Process(target=consume, args=(ch, results)) for _ in range(consumers)]
    for p in procs:
        p.start()
    got = [row for _ in range(consumers) for row in results.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    expected = [
        (t, i, hashlib.sha256(blob(t * 100_000 + i, size)).hexdigest(), size)
        for t in range(producers)
        for i, size in enumerate(sizes)
    ]
    assert sorted(got) == sorted(expected)
    ch.close()


def test_many_producers_many_consumers() -> None:
    """Every item put by 3 producers is got exactly once by one of 3 consumers."""
    run_mpmc([1, 5000, 70_000, 0, 300_000] * 20, producers=3, consumers=3, slots=4, slot_size=65536)


def test_items_larger_than_the_ring() -> None:
    """Items bigger than all slots together stream through without deadlock."""
    run_mpmc([1_000_000, 10, 2_500_000], producers=2, consumers=2, slots=2, slot_size=8192)


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40_000), max_size=30),
    producers=st.integers(1, 3),
    consumers=st.integers(1, 3),
    slots=st.integers(1, 5),
)
def test_random_traffic(sizes: list[int], producers: int, consumers: int, slots: int) -> None:
    """Random sizes, producer and consumer counts and ring sizes: nothing lost or duplicated."""
    run_mpmc(sizes, producers, consumers, slots, slot_size=4096)


def test_end_of_stream_needs_every_producer() -> None:
    """The channel closes only after the expected number of ENDs, then keeps raising."""
    ch = Channel(CTX, 4, 4096, expected_ends=2)
    ch.put("a")
    ch.put_end()
    ch.put("b")
    ch.put_end()
    assert ch.get() == "a"
    assert ch.get() == "b"
    for _ in range(3):
        with pytest.raises(EndOfStream):
            ch.get()
    ch.close()


def test_bad_parameters_are_refused() -> None:
    """A channel with no slots, tiny slots or no producers is a programming error."""
    for args in ((0, 4096, 1), (1, 100, 1), (1, 4096, 0)):
        with pytest.raises(ValueError, match="a channel needs"):
            Channel(CTX, *args)
