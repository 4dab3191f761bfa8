"""The body of one worker process: build the stage, pump items, report to the parent.

A worker talks to the parent through its own pipe (it is the pipe's only writer, so a
worker that dies shows up as end-of-file, never as a half-read message that blocks).
Messages are pickled tuples: ("log", event), ("progress", stage, bytes, items),
("item", item) from a sink, ("cpu", {stage: seconds}) once at the end, ("error", pickled
exception, traceback text, stage), ("done",).

A worker runs one chain of stages (:mod:`walg.pipeline.chain`; often a chain of one).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from walg import interrupts
from walg.pipeline import codec, remote
from walg.pipeline.chain import OTHER, Chain
from walg.pipeline.channel import BLOCKING_CODE, Channel, EndOfStream
from walg.pipeline.graph import StageSpec
from walg.pipeline.stage import WorkerContext

__all__ = ["EXIT_CANCELLED", "Outlet", "WorkerPlan", "worker_main"]

EXIT_CANCELLED = 128 + signal.SIGTERM
_PR_SET_PDEATHSIG = 1
_RETRY = 0.05  # seconds between tries to deliver a cancellation (see _on_stop_signal)
# Where a cancellation may be raised: a wait for another process (a channel), or for
# another thread of the stage (a condition, as in queue.Queue: e.g. an upload thread).
_CANCEL_POINTS = BLOCKING_CODE | {threading.Condition.wait.__code__}

Send = Callable[[tuple[Any, ...]], None]


@dataclass
class Outlet:
    """The input of one downstream stage: a shared channel, or one per worker with a key."""

    channels: list[Channel]
    key: Callable[[Any], int] | None = None

    def pick(self, item: Any) -> Channel:
        if self.key is None:
            return self.channels[0]
        return self.channels[self.key(item) % len(self.channels)]


@dataclass
class WorkerPlan:
    """Everything one worker needs, inherited through fork: the stages of its chain, in
    order (the inbox feeds the first, the outlets take what the last emits)."""

    chain: tuple[StageSpec, ...]
    index: int
    inbox: Channel | None
    outlets: list[Outlet]
    log_level: int
    parent_pid: int
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The chain's stage names, e.g. ``tar|compress|upload``."""
        return "|".join(spec.name for spec in self.chain)


class _Cancel(BaseException):
    """Unwinds a cancelled worker (not an Exception: stage code catching Exception must
    not swallow it)."""


class _Delivery:
    done = False  # the handler raises no more: it raised _Cancel once, or close() runs


def worker_main(plan: WorkerPlan, conn: Any, foreign: list[Any]) -> None:
    """Entry point of a worker process. It ends with os._exit, and no exception leaves it:
    a traceback printed by the process machinery would reach the user's terminal.

    Cancellation (SIGTERM from the supervisor, or from the kernel when the parent dies)
    is a flag, checked between items; a worker blocked in a channel wait is woken by the
    handler raising _Cancel there, and only there (see _on_stop_signal)."""
    try:
        code = _guarded(plan, conn, foreign)
    except BaseException:
        code = EXIT_CANCELLED
    os._exit(code)


def _guarded(plan: WorkerPlan, conn: Any, foreign: list[Any]) -> int:
    try:
        _install_signals(plan.parent_pid)
        _keep_freed_memory()
        for other in foreign:
            other.close()
        code = _work(plan, _sender(conn))
    except _Cancel:  # cancelled, possibly while reporting
        code = EXIT_CANCELLED
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _work(plan: WorkerPlan, send: Send) -> int:
    """Run the chain and report how it ended; return the exit code."""
    _forward_logs(send, plan.log_level)

    def report(stage: str, nbytes: int, items: int) -> None:
        send(("progress", stage, nbytes, items))

    contexts = [
        WorkerContext(
            spec.name, plan.index, spec.workers, report, clock=time.monotonic, shared=plan.shared
        )
        for spec in plan.chain
    ]
    chain = Chain(
        [spec.name for spec in plan.chain],
        [spec.factory for spec in plan.chain],
        contexts,
        _emitter(plan, send),
        _cancel_point,
    )
    try:
        _run_chain(plan, chain, contexts)
    except _Cancel:
        raise
    except BaseException as exc:
        if interrupts.requested():  # cancelled: whatever it raised since is not news
            raise _Cancel() from None
        payload, text = remote.pack(exc)
        with contextlib.suppress(OSError):  # the parent may be gone already
            send(("cpu", _cpu(plan, chain)))
            send(("error", payload, text, chain.names[chain.current]))
        return 1
    send(("cpu", _cpu(plan, chain)))
    send(("done",))
    return 0


def _run_chain(plan: WorkerPlan, chain: Chain, contexts: list[WorkerContext]) -> None:
    error: BaseException | None = None
    try:
        chain.open()
        if plan.inbox is None:
            chain.generate()
        else:
            while True:
                _cancel_point()
                try:
                    item = plan.inbox.get()
                except EndOfStream:
                    break
                chain.process(item)
        chain.flush()
        for outlet in plan.outlets:
            for channel in outlet.channels:
                channel.put_end()
        for ctx in contexts:
            ctx.flush_progress()
    finally:
        _Delivery.done = True  # from here on a cancellation must not cut close() short
        failing = chain.current
        error = chain.close()
        chain.current = failing if error is None else chain.close_failed
    if error is not None:
        raise error


def _cpu(plan: WorkerPlan, chain: Chain) -> dict[str, float]:
    """The chain's CPU by stage; the rest of the process as ``other[LABEL]``."""
    report = chain.cpu_report()
    report[f"{OTHER}[{plan.label}]"] = report.pop(OTHER)
    return report


def _cancel_point() -> None:
    if interrupts.requested():
        raise _Cancel()


def _emitter(plan: WorkerPlan, send: Send) -> Callable[[Any], None]:
    outlets = plan.outlets
    if not outlets:
        return lambda item: send(("item", item))
    if len(outlets) == 1:
        only = outlets[0]
        return lambda item: only.pick(item).put(item)

    def broadcast(item: Any) -> None:
        header, buffers = codec.encode(item)
        for outlet in outlets:
            outlet.pick(item).put_encoded(header, buffers)

    return broadcast


def _sender(conn: Any) -> Send:
    lock = threading.Lock()  # stage threads (and their log lines) share the one pipe

    def send(message: tuple[Any, ...]) -> None:
        payload = pickle.dumps(message, protocol=5)
        with lock:
            conn.send_bytes(payload)

    return send


def _on_stop_signal(signum: int, frame: Any) -> None:
    """SIGTERM (and the retry timer it arms): record the request. Raise _Cancel only if
    the worker is inside a wait (_CANCEL_POINTS), where it is the one way to wake it:
    never anywhere else, such as a finalizer or a stage's close(). Elsewhere the worker
    stops at its next item; a timer brings this handler back every _RETRY seconds in case
    it is about to block in a wait first."""
    interrupts.record(signal.SIGTERM)
    if _Delivery.done:
        return
    if frame is not None and frame.f_code in _CANCEL_POINTS:
        _Delivery.done = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        raise _Cancel()
    signal.setitimer(signal.ITIMER_REAL, _RETRY)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory() -> None:
    """Let glibc reuse freed 1 MiB buffers instead of returning them to the kernel.

    By default each 1 MiB buffer a worker allocates may come fresh from mmap and be faulted
    in page by page (~2 GB/s); a restore of 1.1 GB took 292k page faults and 1.5 s of
    system time, 48k and 1.1 s with these two settings (bench/backup.py, backup-fetch).
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):
        pass


def _install_signals(parent_pid: int) -> None:
    # The parent owns Ctrl-C: it cancels the workers itself, with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGALRM, _on_stop_signal)
    # the parent forked us with both blocked (see ProcessRuntime._start)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    try:  # if the parent dies (even by SIGKILL), the kernel sends us SIGTERM
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(EXIT_CANCELLED)


def _forward_logs(send: Send, level: int) -> None:
    def forward(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        send(("log", {k: _plain(v) for k, v in event.items()}))
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            forward,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )


def _plain(value: Any) -> Any:
    """A value safe to pickle to the parent: plain data stays, the rest becomes its repr."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)
