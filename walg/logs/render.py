"""Log lines as text (WAL-G's style, the default) or as JSON objects (``WALG_LOG_FORMAT=json``).

Text is what WAL-G's tracelog writes (Go's ``log`` with ``LstdFlags | Lmicroseconds``: local
time, microseconds), with the event's fields after the message::

    INFO: 2026/12/06 20:00:00.123456 backup-push: uploaded part=3 size=1.2 GiB
    ERROR: 2026/12/06 20:00:01.000002 WAL file pg_wal/000000010000000000000009 does not exist
    HINT: 2026/12/06 20:00:01.000002 PostgreSQL passes %p relative to the data directory

A ``hint`` field becomes a HINT line of its own after the event's line; a traceback
(``exception``) follows as it is. Sizes (fields named ``size`` or ``bytes`` or ending in
``_bytes``; ``_bytes_per_s`` for rates) read as ``1.2 GiB`` in text and stay byte counts in
JSON. Nothing here imports structlog, json or datetime until a line needs them: the CLI's
ERROR lines are written with these functions alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FORMATS", "format_bytes", "go_time", "iso_time", "render_json", "render_text"]

#: WALG_LOG_FORMAT's values: ``text`` (the default) and ``json``.
FORMATS: Final = ("text", "json")

# fields the text renderer places itself rather than as key=value
_PLACED: Final = frozenset({"level", "timestamp", "event", "hint", "exception", "stack"})
_LABELS: Final = {"warn": "WARNING", "exception": "ERROR", "fatal": "CRITICAL"}


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with one decimal: ``5 B``, ``2.0 KiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns at TiB


def go_time(stamp: float | str | None) -> str:
    """``stamp`` (seconds since the epoch, or an ISO 8601 string) as Go's log writes it:
    ``2026/12/06 20:00:00.123456``, in local time (WAL-G's tracelog does not set LUTC)."""
    if isinstance(stamp, str):
        from datetime import datetime

        try:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return stamp
        stamp = parsed.timestamp() if parsed.tzinfo else time.mktime(parsed.timetuple())
    seconds = time.time() if stamp is None else stamp
    micros = int(seconds * 1_000_000) % 1_000_000  # truncated, as Go's log does
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(seconds)) + f".{micros:06d}"


def iso_time(stamp: float) -> str:
    """``stamp`` as ISO 8601 UTC with microseconds: ``2026-12-06T19:00:00.123456Z``."""
    micros = int(stamp * 1_000_000) % 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{micros:06d}Z"


def _label(level: object) -> str:
    name = str(level or "info").lower()
    return _LABELS.get(name, name.upper())


def _is_size(key: str) -> bool:
    return key in ("size", "bytes") or key.endswith("_bytes")


def _value_text(key: str, value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if key.endswith("_bytes_per_s"):
            return format_bytes(value) + "/s"
        if _is_size(key):
            return format_bytes(value)
        return str(value)
    text = str(value)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def render_text(event: Mapping[str, Any]) -> str:
    """One event as WAL-G-style text (more than one line when it has a hint or a traceback)."""
    stamp = go_time(event.get("timestamp"))
    head = f"{_label(event.get('level'))}: {stamp} {event.get('event', '')}"
    fields = " ".join(
        f"{key}={_value_text(key, value)}" for key, value in event.items() if key not in _PLACED
    )
    lines = [f"{head} {fields}" if fields else head]
    if event.get("hint"):
        lines.append(f"HINT: {stamp} {event['hint']}")
    for key in ("stack", "exception"):
        if event.get(key):
            lines.append(str(event[key]).rstrip("\n"))
    return "\n".join(lines)


def render_json(event: Mapping[str, Any]) -> str:
    """One event as one JSON object: ``timestamp`` in ISO 8601 UTC, sizes as byte counts."""
    import json

    stamp = event.get("timestamp")
    doc = {  # time, level and message first, as a reader scans them
        "timestamp": stamp if isinstance(stamp, str) else iso_time(
            time.time() if stamp is None else stamp),
        "level": str(event.get("level") or "info").lower(),
        "event": event.get("event", ""),
    }  # fmt: skip
    doc.update((k, v) for k, v in event.items() if k not in doc)
    return json.dumps(doc, default=repr)
