"""What a stage is: the hooks a worker calls, and the context it hands them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from walg.logs import get_logger

__all__ = ["Stage", "WorkerContext"]


class WorkerContext:
    """What a running stage may know and report: who it is, progress, and a logger.

    ``shared`` holds the objects the caller handed to ``run(graph, shared=...)``: process-
    shared primitives (semaphores, rate limiters) that cannot be pickled into a stage spec
    but are inherited by the workers, and nothing else. Plain data (settings, metadata,
    what to select) goes into the stage's factory arguments, where it is typed and checked
    by ``Graph.validate``; what a stage learns goes downstream in its typed items.

    Progress is accumulated here and handed to ``report`` in batches, so that a stage may
    call :meth:`progress` per buffer without flooding the parent.
    """

    def __init__(
        self,
        stage: str,
        index: int,
        workers: int,
        report: Callable[[str, int, int], None],
        clock: Callable[[], float],
        interval: float = 0.2,
        shared: Mapping[str, Any] | None = None,
    ) -> None:
        self.stage = stage
        self.index = index
        self.workers = workers
        self.shared: Mapping[str, Any] = shared or {}
        self.log = get_logger("walg").bind(stage=stage, worker=index)
        self._report = report
        self._clock = clock
        self._interval = interval
        self._bytes = 0
        self._items = 0
        self._last = clock()
        self._lock = threading.Lock()  # stages may report from their own threads

    def progress(self, nbytes: int = 0, items: int = 0) -> None:
        """Count ``nbytes`` and ``items`` of work done; reported to the parent in batches."""
        with self._lock:
            self._bytes += nbytes
            self._items += items
            now = self._clock()
            if now - self._last < self._interval:
                return
            self._last = now
        self.flush_progress()

    def flush_progress(self) -> None:
        """Report what has been counted and not yet reported."""
        with self._lock:
            nbytes, items = self._bytes, self._items
            self._bytes = self._items = 0
        if nbytes or items:
            self._report(self.stage, nbytes, items)


class Stage:
    """Base class of a stage. A worker builds one instance per process, then calls:

    ``open(ctx)`` once, after the process has started: build clients, handles, buffers here
    (never in ``__init__``, which runs in the parent when the factory is a class).
    ``generate()`` once, for a source (a stage with no inputs): yield the items to emit.
    ``process(item)`` per input item: yield 0..n items.
    ``flush()`` once at end of stream: yield what was held back.
    ``close()`` always, last, even after a failure or a cancellation; it must cope with an
    ``open()`` that did not finish.
    """

    def open(self, ctx: WorkerContext) -> None:
        """Build per-process resources."""

    def generate(self) -> Iterable[Any]:
        """Yield the items of a source stage."""
        raise NotImplementedError(f"{type(self).__name__} is a source but has no generate()")

    def process(self, item: Any) -> Iterable[Any]:
        """Yield the outputs for one input item."""
        raise NotImplementedError(f"{type(self).__name__} has inputs but no process()")

    def flush(self) -> Iterable[Any]:
        """Yield what is left at end of stream."""
        return ()

    def close(self) -> None:
        """Release what ``open`` built."""
