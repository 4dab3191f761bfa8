"""How fast 1 MiB buffers move between two processes, by transport.

Prints GB/s for: a multiprocess.Queue of bytes (the baseline the design started from), a
pipe of raw bytes, walg's shared-memory Channel on its own, and the whole ProcessRuntime
running a two-stage graph (source -> sink) with default settings. Ratios are to the Queue
run made in this same process.

    .venv/bin/python bench/pipeline_throughput.py [--gib 4]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable, Iterator

import multiprocess

from walg.pipeline import (
    Channel,
    EndOfStream,
    Graph,
    ProcessRuntime,
    Stage,
    StageSpec,
    WorkerContext,
)
from walg.pipeline.graph import DEFAULT_SLOT_SIZE

MIB = 1 << 20
CTX = multiprocess.get_context("fork")
PAYLOAD = bytes(range(256)) * (MIB // 256)


def timed(send: Callable[[int], None], receive: Callable[[], int], count: int) -> float:
    """Run ``send(count)`` in a child and ``receive()`` here; return GB/s."""
    child = CTX.Process(target=send, args=(count,))
    start = time.perf_counter()
    child.start()
    received = receive()
    elapsed = time.perf_counter() - start
    child.join()
    assert received == count * len(PAYLOAD), (received, count)
    return received / elapsed / 1e9


def bench_queue(count: int) -> float:
    queue = CTX.Queue(8)

    def send(n: int) -> None:
        for _ in range(n):
            queue.put(PAYLOAD)
        queue.put(None)

    def receive() -> int:
        total = 0
        while (item := queue.get()) is not None:
            total += len(item)
        return total

    return timed(send, receive, count)


def bench_pipe(count: int) -> float:
    reader, writer = CTX.Pipe(duplex=False)

    def send(n: int) -> None:
        for _ in range(n):
            writer.send_bytes(PAYLOAD)
        writer.send_bytes(b"")

    def receive() -> int:
        total = 0
        while item := reader.recv_bytes():
            total += len(item)
        return total

    return timed(send, receive, count)


def bench_channel(count: int) -> float:
    channel = Channel(CTX, 8, DEFAULT_SLOT_SIZE, expected_ends=1)

    def send(n: int) -> None:
        for _ in range(n):
            channel.put(PAYLOAD)
        channel.put_end()

    def receive() -> int:
        total = 0
        while True:
            try:
                total += len(channel.get())
            except EndOfStream:
                return total

    return timed(send, receive, count)


class Source(Stage):
    """Yields ``count`` 1 MiB buffers, cycling through ``pool`` distinct ones.

    A pool larger than the CPU caches makes every copy come from and go to main memory,
    as a disk reader's fresh buffers do; a pool of one measures the cache-hot best case.
    """

    def __init__(self, count: int, pool: int) -> None:
        self.count = count
        self.pool = pool

    def open(self, ctx: WorkerContext) -> None:
        self.buffers = [bytes([i % 251]) * MIB for i in range(self.pool)]

    def generate(self) -> Iterator[bytes]:
        for i in range(self.count):
            yield self.buffers[i % self.pool]


class Count(Stage):
    def open(self, ctx: WorkerContext) -> None:
        self.total = 0

    def process(self, item: bytes) -> None:
        self.total += len(item)

    def flush(self) -> list[int]:
        return [self.total]


def bench_runtime(count: int, pool: int) -> float:
    import functools

    graph = Graph.chain(
        StageSpec("source", functools.partial(Source, count, pool)),
        StageSpec("sink", Count, queue_bound=8),
    )
    start = time.perf_counter()
    result = ProcessRuntime().run(graph)
    elapsed = time.perf_counter() - start
    assert result.outputs["sink"] == [count * MIB]
    return count * MIB / elapsed / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0, help="payload per fast run (GiB)")
    args = parser.parse_args()
    count = int(args.gib * 1024)
    queued = max(count // 4, 64)
    baseline = bench_queue(queued)
    rows = [
        ("multiprocess.Queue of bytes (baseline)", baseline),
        ("pipe of raw bytes", bench_pipe(count)),
        ("walg Channel (shared-memory ring)", bench_channel(count)),
        ("walg ProcessRuntime, 2 stages, hot buffer", bench_runtime(count, 1)),
        ("walg ProcessRuntime, 2 stages, 256 MiB pool", bench_runtime(count, 256)),
    ]
    print(f"1 MiB buffers between two processes, {count} MiB per run (queue: {queued} MiB)")
    for name, rate in rows:
        print(f"  {name:<46} {rate:6.2f} GB/s   x{rate / baseline:5.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  peak RSS: parent {peak:.0f} MiB, largest child {children:.0f} MiB")


if __name__ == "__main__":
    main()
