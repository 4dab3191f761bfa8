"""Run a stage graph in worker processes and supervise them.

The parent starts one process per worker (fork), then waits on every worker's report
pipe and process sentinel at once, so it notices output, failures and deaths without
polling. The first failure (an exception, a worker that ends without reporting, Ctrl-C
or SIGTERM in the parent) cancels the run: every live worker gets SIGTERM, which unwinds
it through ``close()``; any still alive after ``grace`` seconds gets SIGKILL. The caller
then gets the first failure, with the worker's traceback attached as ``__cause__``.

In the parent, Ctrl-C and SIGTERM only record a request (:mod:`walg.interrupts`) and wake
the supervisor's wait, which raises Cancelled or Terminated from there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import resource
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import multiprocess
from multiprocess.connection import wait

from walg import interrupts
from walg.errors import Cancelled, WorkerDied
from walg.logs import emit, get_logger
from walg.pipeline import remote
from walg.pipeline.channel import Channel
from walg.pipeline.graph import Graph
from walg.pipeline.plan import Chains, describe, plan_chains
from walg.pipeline.result import LogCallback, ProgressCallback, RunResult
from walg.pipeline.worker import Outlet, WorkerPlan, worker_main

__all__ = ["ProcessRuntime"]

_log = get_logger("walg.pipeline")

_WORKER_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass
class _Worker:
    plan: WorkerPlan
    process: Any
    reader: Any
    status: str = "running"  # running | done | error
    eof: bool = False

    def where(self, stage: str | None = None) -> str:
        """Where a failure happened: the stage (or the worker's chain) and the worker."""
        if stage is None and len(self.plan.chain) > 1:
            return f"stages {self.plan.label!r} worker {self.plan.index}"
        return f"stage {stage or self.plan.chain[0].name!r} worker {self.plan.index}"


class ProcessRuntime:
    """Runs a graph with each stage in ``workers`` processes joined by bounded channels;
    with ``chaining`` (the default) stages joined one-to-one share their workers'
    processes (see :mod:`walg.pipeline.plan`)."""

    def __init__(
        self,
        *,
        grace: float = 5.0,
        log_level: int = logging.INFO,
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = emit,
        chaining: bool = True,
    ) -> None:
        self.grace = grace
        self.log_level = log_level
        self.on_progress = on_progress
        self.on_log = on_log
        self.chaining = chaining

    def describe(self, graph: Graph) -> str:
        """The processes and channels a run of ``graph`` makes, in one line."""
        return describe(graph, plan_chains(graph, self.chaining))

    def run(self, graph: Graph, shared: Mapping[str, Any] | None = None) -> RunResult:
        """Run ``graph`` to the end and return what its sinks emitted. ``shared`` objects
        (process primitives only, e.g. a multiprocess Semaphore) reach every worker as
        ``ctx.shared``, inherited through fork."""
        graph.validate()
        chains = plan_chains(graph, self.chaining)
        ctx = multiprocess.get_context("fork")
        heads = [graph.spec(chain[0]) for chain in chains]
        channels = {
            s.name: [
                Channel(ctx, s.queue_bound, s.slot_size, graph.expected_ends(s.name))
                for _ in range(s.workers if s.key is not None else 1)
            ]
            for s in heads
            if graph.upstream(s.name)
        }
        result = RunResult(outputs={name: [] for name in graph.sinks()})
        workers: list[_Worker] = []
        started = _own_cpu()
        try:
            with interrupts.stop_requests():
                workers = self._start(ctx, graph, chains, channels, dict(shared or {}))
                self._supervise(workers, result)
            _log.debug(
                "stage graph done",
                layout=describe(graph, chains),
                cpu_s={k: round(v, 3) for k, v in result.cpu.items()},
                supervisor_cpu_s=round(_own_cpu() - started, 3),
            )
        except BaseException as exc:
            self._shutdown(workers, result)
            if isinstance(exc, KeyboardInterrupt):
                raise Cancelled("interrupted by Ctrl-C") from exc
            raise
        finally:
            for w in workers:
                w.reader.close()
            for group in channels.values():
                for channel in group:
                    channel.close()
        return result

    def _start(
        self,
        ctx: Any,
        graph: Graph,
        chains: Chains,
        channels: dict[str, list[Channel]],
        shared: dict[str, Any],
    ) -> list[_Worker]:
        def inbox(name: str, index: int) -> Channel | None:
            group = channels.get(name)
            if group is None:
                return None
            return group[index] if len(group) > 1 else group[0]

        plans = [
            WorkerPlan(
                chain=tuple(graph.spec(name) for name in chain),
                index=i,
                inbox=inbox(chain[0], i),
                outlets=[
                    Outlet(channels[d], graph.spec(d).key) for d in graph.downstream(chain[-1])
                ],
                log_level=self.log_level,
                parent_pid=os.getpid(),
                shared=shared,
            )
            for chain in chains
            for i in range(graph.spec(chain[0]).workers)
        ]
        pipes = [ctx.Pipe(duplex=False) for _ in plans]
        every_end = [end for pipe in pipes for end in pipe]
        workers: list[_Worker] = []
        try:
            for plan, (reader, writer) in zip(plans, pipes, strict=True):
                foreign = [end for end in every_end if end is not writer]
                process = ctx.Process(
                    target=worker_main,
                    args=(plan, writer, foreign),
                    name=f"walg:{plan.label}:{plan.index}",
                )
                # The child starts with SIGTERM/SIGINT blocked and unblocks them once its
                # own handlers are in place: a signal in between must not run ours there.
                previous = signal.pthread_sigmask(signal.SIG_BLOCK, _WORKER_SIGNALS)
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
                workers.append(_Worker(plan, process, reader))
        except BaseException:
            for _reader, writer in pipes:
                writer.close()
            self._shutdown(workers, RunResult())
            raise
        for _reader, writer in pipes:
            writer.close()
        return workers

    def _supervise(self, workers: list[_Worker], result: RunResult) -> None:
        live = {id(w): w for w in workers}
        failure: BaseException | None = None
        wakeup = interrupts.wakeup_fd()
        while live and failure is None:
            interrupts.check()
            by_handle: dict[Any, _Worker] = {}
            for w in live.values():
                if not w.eof:
                    by_handle[w.reader] = w
                by_handle[w.process.sentinel] = w
            ready = wait(list(by_handle) + ([] if wakeup is None else [wakeup]))
            interrupts.check()
            for handle in ready:
                w = by_handle[handle]
                failure = failure or self._drain(w, result)
                if handle is w.process.sentinel:
                    failure = failure or self._reap(w, result)
                    live.pop(id(w), None)
        if failure is not None:
            raise failure

    def _drain(self, w: _Worker, result: RunResult) -> BaseException | None:
        """Handle every message waiting in ``w``'s pipe; return a failure it reported."""
        failure = None
        while not w.eof and w.reader.poll(0):
            try:
                message = pickle.loads(w.reader.recv_bytes())
            except (EOFError, OSError):
                w.eof = True
                break
            failure = self._handle(w, message, result) or failure
        return failure

    def _handle(
        self, w: _Worker, message: tuple[Any, ...], result: RunResult
    ) -> BaseException | None:
        kind = message[0]
        if kind == "item":
            result.outputs[w.plan.chain[-1].name].append(message[1])
        elif kind == "progress":
            result.add_progress(message[1], message[2], message[3])
            if self.on_progress is not None:
                self.on_progress(result.progress)
        elif kind == "log":
            if self.on_log is not None:
                self.on_log(message[1])
        elif kind == "cpu":
            result.add_cpu(message[1])
        elif kind == "done":
            w.status = "done"
        elif kind == "error":
            w.status = "error"
            return remote.unpack(message[1], message[2], w.where(message[3]))
        return None

    def _reap(self, w: _Worker, result: RunResult) -> BaseException | None:
        """``w`` has exited: read the rest of its reports, then judge how it ended."""
        w.process.join()
        while not w.eof:
            failure = self._drain(w, result)
            if failure is not None:
                return failure
            if not w.eof and not w.reader.poll(0):
                break
        if w.status != "running":
            return None
        code = w.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return WorkerDied(f"{w.where()} died without reporting ({how})")

    def _shutdown(self, workers: list[_Worker], result: RunResult) -> None:
        """Stop every live worker: SIGTERM, then SIGKILL after the grace period; reap all."""
        live = [w for w in workers if w.process.exitcode is None]
        for w in live:
            _signal(w, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        try:
            while live:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                handles = [w.process.sentinel for w in live] + [w.reader for w in live if not w.eof]
                wait(handles, timeout=remaining)
                for w in live:
                    self._drain_quietly(w)
                live = [w for w in live if w.process.exitcode is None]
        finally:
            for w in live:
                _signal(w, signal.SIGKILL)
            for w in workers:
                w.process.join()

    def _drain_quietly(self, w: _Worker) -> None:
        """Read and drop reports (keeps a worker from blocking on a full pipe), but log."""
        while not w.eof and w.reader.poll(0):
            try:
                message = pickle.loads(w.reader.recv_bytes())
            except (EOFError, OSError):
                w.eof = True
                return
            if message[0] == "log" and self.on_log is not None:
                self.on_log(message[1])


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _signal(w: _Worker, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if w.process.pid is not None and w.process.exitcode is None:
            os.kill(w.process.pid, signum)
