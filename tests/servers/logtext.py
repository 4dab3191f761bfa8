"""Reading walg's log lines in tests: WAL-G's text lines (``ERROR: 2026/12/06 20:00:00.123456
message``) with their time taken out, so a test can compare what a line says."""

from __future__ import annotations

import re

__all__ = ["LINE", "untimed"]

#: One text log line: its label (level, or HINT), its local time, the rest.
LINE = re.compile(
    r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL|HINT): "
    r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6}) (.*)$"
)

_TIME = re.compile(
    r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL|HINT): \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} ",
    re.MULTILINE,
)


def untimed(text: str) -> str:
    """``text`` with the time taken out of every log line: ``ERROR: message``."""
    return _TIME.sub(r"\1: ", text)
