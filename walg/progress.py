"""Progress of a long command: a bar on a terminal, periodic log events otherwise.

The bar is redrawn in place (``\\r``) and says how much is done in percent; it tells
:mod:`walg.logs` that its line is open, so a log line written meanwhile first ends it
(the bar goes on below). When the command succeeds it ends at 100%: the work is done even
when the files changed size during it. With WALG_LOG_FORMAT=json there is no bar: every
line of stderr is then a JSON object, so progress is logged as events, as in a pipe.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TextIO

from walg import logs
from walg.logs.render import format_bytes
from walg.pipeline import StageProgress

__all__ = ["ProgressReporter", "format_bytes"]


class ProgressReporter:
    """Called with the runtime's per-stage progress and the expected total of ``stage``.

    On a terminal (text logs) it redraws one line (percent, bytes done / total, rate, ETA)
    at most every ``tty_interval`` seconds; elsewhere it logs a ``progress`` event every
    ``log_interval``. Use it as a context manager, or call :meth:`finish` at the end.
    """

    def __init__(
        self,
        stage: str,
        what: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty_interval: float = 0.5,
        log_interval: float = 10.0,
    ) -> None:
        self.stage = stage
        self.what = what
        self.stream = stream or sys.stderr
        isatty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.tty = isatty and logs.output_format() == "text"
        self.clock = clock
        self.interval = tty_interval if self.tty else log_interval
        self.started = clock()
        self.last = -1e9
        self.drawn = False  # the bar was drawn at least once
        self.open = False  # the bar's line is not ended yet
        self.done = 0
        self.total = 0
        self.width = 0  # of the text last drawn, to blank what a shorter one leaves
        # A command may run several graphs (backup-fetch: each backup of a delta chain, then
        # backup_label): each run counts from 0, so the bytes of the runs before are added.
        self.run_bytes = 0
        self.base = 0

    def __call__(self, progress: Mapping[str, StageProgress], total: int) -> None:
        entry = progress.get(self.stage)
        if entry is None:
            return
        if entry.bytes < self.run_bytes:  # fewer than before: the command's next run
            self.base += self.run_bytes
        self.run_bytes = entry.bytes
        self.done, self.total = self.base + entry.bytes, total
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        self._show(total, now)

    def _show(self, total: int, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        eta = (total - self.done) / rate if rate > 0 and total > self.done else 0.0
        share = min(1.0, self.done / total) if total else 0.0
        if not self.tty:
            logs.get_logger("walg").info(
                "progress", task=self.what, percent=round(share * 100, 1),
                done_bytes=self.done, total_bytes=total, rate_bytes_per_s=int(rate),
                eta_s=round(eta, 1),
            )  # fmt: skip
            return
        minutes, seconds = divmod(int(eta), 60)
        self._draw(share, f"{format_bytes(self.done)} / {format_bytes(total)}  "
                   f"{format_bytes(rate)}/s  ETA {minutes}:{seconds:02d}")  # fmt: skip

    def _draw(self, share: float, text: str) -> None:
        bar = "#" * int(share * 30)
        percent = int(share * 1000) / 10  # floored: 100.0% only when it is done
        line = f"{self.what} [{bar:<30}] {percent:5.1f}% {text}"
        padding = " " * max(0, self.width - len(line)) if self.open else ""
        self.width = len(line)
        logs.hold_line(None)  # this write continues the open line itself
        self.stream.write(f"\r{line}{padding}")
        self.stream.flush()
        self.drawn = self.open = True
        logs.hold_line(self._end_line)

    def _end_line(self) -> None:
        if self.open:
            self.open = False
            self.stream.write("\n")
            self.stream.flush()

    def finish(self, ok: bool = True) -> None:
        """End the bar's line (on a terminal); after a success, at 100% first."""
        if self.tty and ok and self.drawn:
            elapsed = max(self.clock() - self.started, 1e-6)
            minutes, seconds = divmod(int(elapsed), 60)
            self._draw(1.0, f"{format_bytes(self.done)} in {minutes}:{seconds:02d}  "
                       f"{format_bytes(self.done / elapsed)}/s")  # fmt: skip
        logs.hold_line(None)
        self._end_line()

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish(ok=exc_type is None)
