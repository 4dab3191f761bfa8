"""Run a stage graph in the calling process, for tests and debugging.

Same graph, same hooks, same results as :class:`~walg.pipeline.runtime.ProcessRuntime`
(as a multiset: the order across workers differs). Each stage still gets ``workers``
instances, fed round-robin; items are pushed depth-first, so memory stays bounded by the
graph's depth. Exceptions propagate as they are, with their real traceback. Ctrl-C and
SIGTERM stop the run between items, as Cancelled and Terminated (see :mod:`walg.interrupts`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from walg import interrupts
from walg.pipeline.graph import Graph
from walg.pipeline.result import ProgressCallback, RunResult
from walg.pipeline.stage import Stage, WorkerContext

__all__ = ["InlineRuntime"]


class InlineRuntime:
    """Runs every stage of a graph in this process."""

    def __init__(self, *, on_progress: ProgressCallback | None = None) -> None:
        self.on_progress = on_progress

    def run(self, graph: Graph, shared: Mapping[str, Any] | None = None) -> RunResult:
        """Run ``graph`` to the end and return what its sinks emitted."""
        graph.validate()
        result = RunResult(outputs={name: [] for name in graph.sinks()})
        run = _InlineRun(graph, result, self.on_progress, shared or {})
        try:
            with interrupts.stop_requests():
                run.execute()
        finally:
            run.close_all()
        return result


class _InlineRun:
    def __init__(
        self,
        graph: Graph,
        result: RunResult,
        on_progress: ProgressCallback | None,
        shared: Mapping[str, Any],
    ) -> None:
        self.shared = shared
        self.graph = graph
        self.result = result
        self.on_progress = on_progress
        self.instances: dict[str, list[Stage]] = {}
        self.contexts: list[WorkerContext] = []
        self.turn: dict[str, Iterator[int]] = {}

    def _report(self, stage: str, nbytes: int, items: int) -> None:
        self.result.add_progress(stage, nbytes, items)
        if self.on_progress is not None:
            self.on_progress(self.result.progress)

    def execute(self) -> None:
        order = self.graph.topological_order()
        for name in order:
            spec = self.graph.spec(name)
            self.instances[name] = []
            self.turn[name] = itertools.cycle(range(spec.workers))
            for index in range(spec.workers):
                stage = spec.factory()
                self.instances[name].append(stage)
                ctx = WorkerContext(
                    name, index, spec.workers, self._report, time.monotonic, shared=self.shared
                )
                self.contexts.append(ctx)
                stage.open(ctx)
        sources = set(self.graph.sources())
        for name in order:  # every input of a stage is finished before the stage flushes
            for stage in self.instances[name]:
                if name in sources:
                    self._emit_all(name, stage.generate())
                self._emit_all(name, stage.flush())
        for ctx in self.contexts:
            ctx.flush_progress()

    def _emit_all(self, name: str, items: Iterable[Any] | None) -> None:
        for item in items or ():
            interrupts.check()
            self._emit(name, item)

    def _emit(self, name: str, item: Any) -> None:
        targets = self.graph.downstream(name)
        if not targets:
            self.result.outputs[name].append(item)
        for target in targets:
            key = self.graph.spec(target).key
            instances = self.instances[target]
            index = next(self.turn[target]) if key is None else key(item) % len(instances)
            self._emit_all(target, instances[index].process(item))

    def close_all(self) -> None:
        for stages in reversed(list(self.instances.values())):
            for stage in stages:
                stage.close()
