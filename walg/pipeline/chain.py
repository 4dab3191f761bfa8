"""Run the stages of one chain in one worker process, and account for their CPU time.

The first stage of the chain takes its items from the worker's inbox (or generates them);
every item a stage yields is handed at once to the next stage's ``process``, depth first,
and what the last stage yields goes to ``emit`` (a channel, or the parent). So at most
one item per stage is in flight inside a chain, and memory stays bounded by its length.

Stage hooks are called in the same order as in separate processes: ``open`` for each
stage in chain order; ``process`` per item; at the end of the input each stage's
``flush`` in chain order, its output pushed through the stages after it before the next
stage flushes; ``close`` for every stage that was built, last stage first, even after a
failure. The stage running when an exception is raised is recorded in ``current``, so the
error names the right stage.

CPU time is measured per stage as the time the worker's main thread spends in that stage's
hooks (``time.thread_time``); :meth:`Chain.cpu_report` adds the rest of the process (the
channels, the runtime's own work, and threads the stages started) as ``other``.
"""

from __future__ import annotations

import functools
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from walg.pipeline.stage import Stage, WorkerContext

__all__ = ["OTHER", "Chain"]

OTHER = "other"
"""The key of :meth:`Chain.cpu_report` for CPU spent outside every stage's hooks."""


class Chain:
    """The stage instances of one worker, in chain order."""

    def __init__(
        self,
        names: Sequence[str],
        factories: Sequence[Callable[[], Stage]],
        contexts: Sequence[WorkerContext],
        emit: Callable[[Any], None],
        cancel_point: Callable[[], None],
    ) -> None:
        self.names = list(names)
        self._factories = list(factories)
        self._contexts = list(contexts)
        self._emit = emit
        self._cancel_point = cancel_point
        self.stages: list[Stage] = []
        self.cpu = [0.0] * len(self.names)
        self.current = 0  # index of the stage whose code runs (or raised)
        self.close_failed = 0  # index of the first stage whose close() raised

    def open(self) -> None:
        """Build and open every stage, in order. A stage that was built is closed by
        :meth:`close` even when its ``open`` failed."""
        for index, (factory, ctx) in enumerate(zip(self._factories, self._contexts, strict=True)):
            self.current = index
            started = time.thread_time()
            stage = factory()
            self.stages.append(stage)
            stage.open(ctx)
            self.cpu[index] += time.thread_time() - started

    def generate(self) -> None:
        """Run the chain's first stage as a source."""
        self._drive(0, self.stages[0].generate)

    def process(self, item: Any) -> None:
        """Push one input item through the chain."""
        self._drive(0, lambda: self.stages[0].process(item))

    def flush(self) -> None:
        """End of input: flush every stage in order, each flush's output pushed on."""
        for index, stage in enumerate(self.stages):
            self._drive(index, stage.flush)

    def close(self) -> BaseException | None:
        """Close every built stage, last first; return the first error a close raised
        (the others are closed all the same)."""
        first: BaseException | None = None
        for index in reversed(range(len(self.stages))):
            self.current = index
            started = time.thread_time()
            try:
                self.stages[index].close()
            except BaseException as exc:  # every stage is closed; the first error is reported
                if first is None:
                    first, self.close_failed = exc, index
            self.cpu[index] += time.thread_time() - started
        return first

    def _drive(self, index: int, call: Callable[[], Iterable[Any] | None]) -> None:
        """Call stage ``index``'s hook and hand each item it yields to the next stage."""
        cpu = self.cpu
        last = index + 1 == len(self.stages)
        self.current = index
        started = time.thread_time()
        try:
            items = iter(call() or ())
        finally:
            cpu[index] += time.thread_time() - started
        while True:
            self._cancel_point()
            self.current = index
            started = time.thread_time()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                cpu[index] += time.thread_time() - started
            if last:
                self._emit(item)
            else:
                self._drive(index + 1, functools.partial(self.stages[index + 1].process, item))

    def cpu_report(self) -> dict[str, float]:
        """CPU seconds by stage name, and the rest of this process's CPU as ``other``."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        total = usage.ru_utime + usage.ru_stime
        report = dict(zip(self.names, self.cpu, strict=True))
        report[OTHER] = max(0.0, total - sum(self.cpu))
        return report
