"""Progress of a long command: a bar on a terminal, periodic log events otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from walg.logs import get_logger
from walg.pipeline import StageProgress

__all__ = ["ProgressReporter", "format_bytes"]


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class ProgressReporter:
    """Called with the runtime's per-stage progress and the expected total of ``stage``.

    On a terminal it redraws one line (bytes done / total, rate, ETA) at most every
    ``tty_interval`` seconds; elsewhere it logs a ``progress`` event every ``log_interval``.
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
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.interval = tty_interval if self.tty else log_interval
        self.started = clock()
        self.last = -1e9
        self.drawn = False
        self.done = 0

    def __call__(self, progress: Mapping[str, StageProgress], total: int) -> None:
        entry = progress.get(self.stage)
        if entry is None:
            return
        self.done = entry.bytes
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        self._show(total, now)

    def _show(self, total: int, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        eta = (total - self.done) / rate if rate > 0 and total > self.done else 0.0
        if not self.tty:
            get_logger("walg").info(
                "progress", task=self.what, bytes=self.done, total=total,
                rate_bytes_per_s=int(rate), eta_s=round(eta, 1),
            )
            return
        share = min(1.0, self.done / total) if total else 0.0
        bar = "#" * int(share * 30)
        minutes, seconds = divmod(int(eta), 60)
        self.stream.write(
            f"\r{self.what} [{bar:<30}] {share * 100:5.1f}% {format_bytes(self.done)}"
            f" / {format_bytes(total)}  {format_bytes(rate)}/s  ETA {minutes}:{seconds:02d} "
        )
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """End the bar's line (on a terminal)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
