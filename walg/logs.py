"""Structured logging for walg, built on structlog.

``configure`` is called once by ``walg.cli.main`` with the level from the settings. Log lines
go to stderr (stdout belongs to command output such as ``backup-list``): one JSON object per
line when stderr is not a terminal (cron, archive_command, journald), a readable line on a
terminal. Worker processes send their event dicts to the parent, which re-logs them with
``emit`` so that one process owns the output stream.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["LEVELS", "configure", "emit", "get_logger"]

#: structlog method names, in increasing severity; ``configure`` accepts these (any case).
LEVELS = ("debug", "info", "warning", "error", "critical")

# Level names a worker may send that are spelled differently from our method names.
_LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}

_timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)


def _add_timestamp(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Stamp the event with ISO UTC time, keeping a timestamp a worker already set."""
    if "timestamp" in event_dict:
        return event_dict
    return _timestamper(logger, method, event_dict)


def _level_number(level: str) -> int:
    """Return the stdlib number of a level name such as ``"INFO"``; reject unknown names."""
    name = level.strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    return logging.getLevelNamesMapping()[name.upper()]


def _wants_json(stream: TextIO) -> bool:
    """JSON lines unless the stream is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except ValueError:  # a closed stream
        return True


def _processors(json: bool) -> list[Processor]:
    """The processor chain shared by both output formats, ending in the renderer."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_timestamp,
        structlog.processors.StackInfoRenderer(),
    ]
    if json:
        return [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    return [*shared, structlog.dev.ConsoleRenderer(colors=False)]


def configure(level: str, *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog for this process.

    ``level`` is a stdlib level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``,
    ``CRITICAL``; any case). ``stream`` defaults to ``sys.stderr``. ``json`` forces the
    output format; by default it is JSON unless ``stream`` is a terminal.
    """
    out = sys.stderr if stream is None else stream
    use_json = _wants_json(out) if json is None else json
    structlog.configure(
        processors=_processors(use_json),
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        context_class=dict,
        # Not cached: configure() may run again (tests, a worker re-configuring after start).
        cache_logger_on_first_use=False,
    )


def get_logger(**initial_values: Any) -> Any:
    """Return a structlog logger bound to ``initial_values``."""
    return structlog.get_logger(**initial_values)


def emit(event_dict: Mapping[str, Any]) -> None:
    """Re-log an event dict received from a worker through this process's logger.

    The dict's ``level`` picks the method (so the parent's level filter applies) and its
    ``event`` is the message; every other key is kept, including a worker's ``timestamp``.
    """
    fields = dict(event_dict)
    raw_level = str(fields.pop("level", "info")).lower()
    level = _LEVEL_ALIASES.get(raw_level, raw_level)
    if level not in LEVELS:
        fields["worker_level"] = raw_level
        level = "info"
    event = fields.pop("event", "")
    getattr(structlog.get_logger(), level)(event, **fields)
