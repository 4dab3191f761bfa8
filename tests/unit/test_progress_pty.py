"""The progress bar on a real terminal (a pseudo-terminal): it reaches 100%, and log lines
written while it runs are never glued to it."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time

DRIVER = """
import time
from walg import logs
from walg.pipeline import StageProgress
from walg.progress import ProgressReporter

logs.configure("INFO")
log = logs.get_logger("walg")
with ProgressReporter("tar", "backup-push", tty_interval=0.0) as reporter:
    for step in range(1, 8):
        reporter({"tar": StageProgress(bytes=step << 20)}, 10 << 20)
        if step == 3:
            log.info("backup started", lsn="0/6000028")
        if step == 5:
            logs.emit({"event": "part uploaded", "level": "warning", "part": 1, "size": 3 << 20})
        time.sleep(0.01)
log.info("backup finished", finish_lsn="0/7000100")
"""

LOG_LINE = re.compile(r"^(INFO|WARNING|ERROR|HINT): \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} \S")
BAR = re.compile(r"^backup-push \[[# ]{30}\] +\d+\.\d% ")


def run_on_a_pty(code: str) -> str:
    """Run ``code`` with its stderr on a pseudo-terminal; everything written there."""
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=slave, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert child.wait(timeout=60) == 0
    finally:
        os.close(master)
    return b"".join(chunks).decode()


def test_bar_reaches_100_and_log_lines_stand_alone() -> None:
    """Every segment of the terminal's output is a whole bar or a whole log line; the last
    bar says 100%, and each log line starts a line of its own."""
    output = run_on_a_pty(DRIVER)
    segments = [s for line in output.split("\r\n") for s in line.split("\r") if s.strip()]
    kinds = []
    for segment in segments:
        bar, log_line = BAR.match(segment), LOG_LINE.match(segment)
        assert bool(bar) != bool(log_line), repr(segment)
        if log_line:
            assert not re.search(r"\d+\.\d% ", segment), repr(segment)
        kinds.append("bar" if bar else "log")
    bars = [s for s in segments if BAR.match(s)]
    assert "100.0%" in bars[-1] and "100.0%" not in "".join(bars[:-1])
    assert kinds[-1] == "log" and kinds.count("log") == 3
    for line in output.split("\r\n"):  # a log line is never the tail of a bar's line
        for marker in ("INFO: ", "WARNING: "):
            assert marker not in line or line.startswith(marker), repr(line)
    assert "lsn=0/6000028" in output and "size=3.0 MiB" in output
