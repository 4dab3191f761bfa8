"""Ctrl-C and SIGTERM as requests to stop, honoured at safe points.

A Python signal handler runs between any two bytecodes of the main thread, even inside a
finalizer, where an exception it raises is printed ("Exception ignored in ...") and lost.
So no handler of walg's raises at an arbitrary point. Inside :func:`stop_requests` (a
pipeline run, a WAL upload) the handler only records the signal and wakes a file
descriptor; long-running code checks at its chunk boundaries (:func:`requested`,
:func:`check`) and raises :class:`~walg.errors.Terminated` (SIGTERM, exit 143) or
:class:`~walg.errors.Cancelled` (Ctrl-C, exit 130) from there, so that its cleanup
(temporary objects removed, uploads aborted, workers stopped) runs as for any error.

A second signal gets the handler that was there before (SIGTERM's default action ends the
process at once). Outside :func:`stop_requests` signals keep their usual effect.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import ClassVar

from walg.errors import Cancelled, Terminated

__all__ = ["check", "record", "requested", "stop_requests", "wakeup_fd"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    signum: int | None = None  # the first stop signal recorded in this process
    reader: int | None = None  # readable once a signal was recorded (while watching)
    writer: int | None = None
    previous: ClassVar[dict[int, object]] = {}


def record(signum: int) -> None:
    """Note that ``signum`` asked this process to stop (safe to call from a handler)."""
    if _State.signum is None:
        _State.signum = signum
    if _State.writer is not None:
        with contextlib.suppress(OSError):  # full or closed: already readable, or over
            os.write(_State.writer, b"!")


def requested() -> bool:
    """Whether a stop signal arrived."""
    return _State.signum is not None


def check() -> None:
    """Raise Terminated (SIGTERM) or Cancelled (Ctrl-C) if a stop signal arrived."""
    signum = _State.signum
    if signum == signal.SIGTERM:
        raise Terminated("stopped by SIGTERM")
    if signum is not None:
        raise Cancelled("interrupted by Ctrl-C")


def wakeup_fd() -> int | None:
    """A descriptor that becomes readable when a stop signal arrives, inside
    :func:`stop_requests` in the main thread (None elsewhere)."""
    return _State.reader


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    record(signum)
    _restore()  # a second signal is not deferred


def _restore() -> None:
    for sig, handler in _State.previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]


def _forget_in_child() -> None:
    """A forked child starts with no request and without its parent's descriptors."""
    for fd in (_State.reader, _State.writer):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    _State.signum = _State.reader = _State.writer = None
    _State.previous = {}


os.register_at_fork(after_in_child=_forget_in_child)


@contextlib.contextmanager
def stop_requests() -> Iterator[None]:
    """While inside (in the main thread), Ctrl-C and SIGTERM are recorded, not raised.

    Nested uses and other threads change nothing (the outermost one in the main thread
    owns the handlers)."""
    if threading.current_thread() is not threading.main_thread() or _State.reader is not None:
        yield
        return
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    _State.reader, _State.writer = reader, writer
    _State.previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    try:
        for sig in _SIGNALS:
            signal.signal(sig, _on_signal)
        if _State.signum is not None:
            record(_State.signum)  # recorded earlier: wake the waiters at once
        yield
    finally:
        _restore()
        _State.previous = {}
        _State.reader = _State.writer = None
        os.close(reader)
        os.close(writer)
