"""The progress display: a bar on a terminal, throttled log events elsewhere."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from walg.pipeline import StageProgress
from walg.progress import ProgressReporter, format_bytes


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_terminal_bar_shows_share_rate_and_eta() -> None:
    """On a terminal one line is redrawn with percent, bytes, rate and ETA."""
    out, clock = Tty(), Clock()
    reporter = ProgressReporter("tar", "backup-push", stream=out, clock=clock)
    clock.now += 2
    reporter({"tar": StageProgress(bytes=512 << 20)}, 1 << 30)
    reporter.finish(ok=False)
    line = out.getvalue()
    assert line.startswith("\rbackup-push [###############") and line.endswith("\n")
    assert " 50.0% 512.0 MiB / 1.0 GiB  256.0 MiB/s  ETA 0:02" in line
    assert "100.0%" not in line  # a failure leaves the bar where it stopped


def test_success_ends_at_100_percent() -> None:
    """A command that succeeds ends its bar at 100%, even when the last update was
    throttled or the files shrank meanwhile, and ends the line."""
    out, clock = Tty(), Clock()
    with ProgressReporter("tar", "backup-push", stream=out, clock=clock) as reporter:
        clock.now += 1
        reporter({"tar": StageProgress(bytes=100 << 20)}, 1 << 30)
        clock.now += 0.1
        reporter({"tar": StageProgress(bytes=900 << 20)}, 1 << 30)  # throttled
        clock.now += 1.9
    final = out.getvalue().split("\r")[-1]
    assert final.startswith("backup-push [" + "#" * 30 + "] 100.0% 900.0 MiB in 0:03")
    assert final.endswith("\n") and out.getvalue().count("\n") == 1


def test_redraws_are_throttled() -> None:
    """Updates within the interval do not redraw."""
    out, clock = Tty(), Clock()
    reporter = ProgressReporter("tar", "x", stream=out, clock=clock, tty_interval=0.5)
    clock.now += 1
    reporter({"tar": StageProgress(bytes=1)}, 10)
    reporter({"tar": StageProgress(bytes=2)}, 10)
    assert out.getvalue().count("\r") == 1


def test_logs_when_not_a_terminal() -> None:
    """Elsewhere (cron, journald) progress becomes a structured log event."""
    clock = Clock()
    reporter = ProgressReporter("extract", "backup-fetch", stream=io.StringIO(), clock=clock)
    clock.now += 10
    with capture_logs() as logs:
        reporter({"extract": StageProgress(bytes=300)}, 1000)
        reporter({"other": StageProgress(bytes=5)}, 1000)
    assert logs == [{"event": "progress", "task": "backup-fetch", "percent": 30.0,
                     "done_bytes": 300, "total_bytes": 1000, "rate_bytes_per_s": 30,
                     "eta_s": 23.3, "log_level": "info"}]


def test_format_bytes() -> None:
    """Sizes use binary units with one decimal."""
    assert [format_bytes(n) for n in (5, 2048, 3 << 30)] == ["5 B", "2.0 KiB", "3.0 GiB"]


def test_bytes_add_up_over_several_runs() -> None:
    """A command that runs several graphs (backup-fetch of a delta chain, then backup_label)
    counts each run's bytes on top of the runs before it."""
    out, clock = Tty(), Clock()
    with ProgressReporter("extract", "backup-fetch", stream=out, clock=clock) as reporter:
        reporter({"extract": StageProgress(bytes=600)}, 1000)
        reporter({"extract": StageProgress(bytes=900)}, 1000)
        reporter({"extract": StageProgress(bytes=100)}, 1000)  # the next run starts at 0
        assert reporter.done == 1000
        reporter({"extract": StageProgress(bytes=40)}, 1000)
        assert reporter.done == 1040
