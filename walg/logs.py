"""Structured logging for walg, built on structlog.

``configure`` is called once by ``walg.cli.main`` with the level from the settings. Log lines
go to stderr (stdout belongs to command output such as ``backup-list``): one JSON object per
line when stderr is not a terminal (cron, archive_command, journald), a readable line on a
terminal. Worker processes send their event dicts to the parent, which re-logs them with
``emit`` so that one process owns the output stream.

structlog (with the asyncio it pulls in) costs ~35 ms to import, too much for a command
that runs once per WAL segment. So nothing here imports it until a log line is actually
written: ``get_logger`` returns a lazy logger, and ``configure`` only records its settings
until structlog is loaded (or applies them at once if something already loaded it).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["LEVELS", "configure", "emit", "get_logger"]

#: structlog method names, in increasing severity; ``configure`` accepts these (any case).
LEVELS = ("debug", "info", "warning", "error", "critical")

# stdlib logging's numbers, without importing logging (~2.5 ms on every wal-push)
_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

# Level names a worker may send that are spelled differently from our method names.
_LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}

_pending: dict[str, Any] | None = None  # configure() arguments not applied yet


def _add_timestamp(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Stamp the event with ISO UTC time, keeping a timestamp a worker already set."""
    if "timestamp" in event_dict:
        return event_dict
    import structlog

    return structlog.processors.TimeStamper(fmt="iso", utc=True)(logger, method, event_dict)


def _level_number(level: str) -> int:
    """Return the stdlib number of a level name such as ``"INFO"``; reject unknown names."""
    name = level.strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    return _NUMBERS[name]


def _wants_json(stream: TextIO) -> bool:
    """JSON lines unless the stream is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except ValueError:  # a closed stream
        return True


def _processors(json: bool) -> list[Processor]:
    """The processor chain shared by both output formats, ending in the renderer."""
    import structlog

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
    global _pending
    _pending = {"level": level, "stream": stream, "json": json}
    if "structlog" in sys.modules:
        _apply()


def _apply() -> None:
    """Configure structlog with what configure() recorded (imports structlog)."""
    global _pending
    if _pending is None:
        return
    level, stream, json = _pending["level"], _pending["stream"], _pending["json"]
    _pending = None
    import structlog

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


class _LazyLogger:
    """A logger that imports and configures structlog only when it first logs."""

    def __init__(self, args: tuple[Any, ...], bound: dict[str, Any]) -> None:
        self._args = args
        self._bound = bound

    def bind(self, **values: Any) -> _LazyLogger:
        return _LazyLogger(self._args, {**self._bound, **values})

    def __getattr__(self, method: str) -> Any:
        if "structlog" not in sys.modules and _NUMBERS.get(method, 100) < _threshold():
            return _ignore  # filtered out anyway: don't pay for importing structlog
        _apply()
        import structlog

        return getattr(structlog.get_logger(*self._args).bind(**self._bound), method)


def _ignore(*_args: Any, **_fields: Any) -> None:
    return None


def _threshold() -> int:
    """The level below which lines are dropped, as configured so far (info by default)."""
    if _pending is not None:
        return _level_number(str(_pending["level"]))
    return _NUMBERS["info"]


def get_logger(*args: Any, **initial_values: Any) -> Any:
    """A logger bound to ``initial_values``; structlog is loaded on its first use."""
    return _LazyLogger(args, initial_values)


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
    _apply()
    import structlog

    getattr(structlog.get_logger(), level)(event, **fields)
