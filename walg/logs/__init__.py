"""Structured logging for walg, built on structlog.

``configure`` is called once by ``walg.cli.main`` with the level and format from the
settings. Log lines go to stderr (stdout belongs to command output such as ``backup-list``),
on a terminal and in a pipe alike: WAL-G's text lines by default (``INFO: 2026/12/06
20:00:00.123456 message key=value``), one JSON object per line with ``WALG_LOG_FORMAT=json``
(see :mod:`walg.logs.render`). The CLI's ERROR/HINT lines (``write_error``) and the events
worker processes send to the parent (``emit``) are written the same way, so every line of
a stream has one format. A progress bar that left its line open (``hold_line``) gets it
ended before any log line is written.

structlog (with the asyncio it pulls in) costs ~35 ms to import, too much for a command
that runs once per WAL segment. So nothing here imports it until a log line is actually
written: ``get_logger`` returns a lazy logger, and ``configure`` only records its settings
until structlog is loaded (or applies them at once if something already loaded it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from walg.logs.render import FORMATS, render_json, render_text

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "FORMATS", "LEVELS", "configure", "emit", "end_open_line", "get_logger", "hold_line",
    "output_format", "reset", "set_format", "write_error", "write_event",
]

#: structlog method names, in increasing severity; ``configure`` accepts these (any case).
LEVELS = ("debug", "info", "warning", "error", "critical")

# stdlib logging's numbers, without importing logging (~2.5 ms on every wal-push)
_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

# Level names a worker may send that are spelled differently from our method names.
_LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}

_pending: dict[str, Any] | None = None  # configure() arguments not applied yet
_format = "text"  # the output format of this process: "text" or "json"
_stream: TextIO | None = None  # where lines go; None: sys.stderr as it is when writing
_open_line: Callable[[], None] | None = None  # ends a progress bar's line (hold_line)


def _add_timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Stamp the event with the time now, keeping a timestamp a worker already set."""
    event_dict.setdefault("timestamp", time.time())
    return event_dict


def _level_number(level: str) -> int:
    """Return the stdlib number of a level name such as ``"INFO"``; reject unknown names."""
    name = level.strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    return _NUMBERS[name]


def _render(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    return render_json(event_dict) if _format == "json" else render_text(event_dict)


def _processors() -> list[Processor]:
    """The processor chain: level, time, stack and traceback, then this process's renderer."""
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_timestamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _render,
    ]


def set_format(fmt: str | None) -> None:
    """Use ``fmt`` (``"json"``; anything else means text) for every line from now on.

    The CLI calls this with WALG_LOG_FORMAT before the settings are read, so that an error
    in the settings themselves is reported in the format asked for."""
    global _format
    _format = "json" if (fmt or "").strip().lower() == "json" else "text"


def output_format() -> str:
    """``"text"`` or ``"json"``: how this process writes its lines."""
    return _format


def configure(
    level: str,
    *,
    stream: TextIO | None = None,
    fmt: str | None = None,
    json: bool | None = None,
) -> None:
    """Configure logging for this process.

    ``level`` is a stdlib level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``,
    ``CRITICAL``; any case). ``stream`` defaults to ``sys.stderr``. ``fmt`` is ``"text"``
    or ``"json"`` (``json=True`` is the same as ``fmt="json"``); by default the format
    stays what :func:`set_format` chose (text unless told otherwise).
    """
    global _pending, _stream
    _level_number(level)  # an unknown name fails here, not at the first line
    if json is not None:
        fmt = "json" if json else "text"
    if fmt is not None:
        set_format(fmt)
    _stream = stream
    _pending = {"level": level}
    if "structlog" in sys.modules:
        _apply()


def _apply() -> None:
    """Configure structlog with what configure() recorded (imports structlog); when nothing
    configured it (a library use, a test), INFO and up in this process's format to stderr."""
    global _pending
    import structlog

    if _pending is None:
        if structlog.is_configured():
            return
        _pending = {"level": "info"}
    level = _pending["level"]
    _pending = None

    structlog.configure(
        processors=_processors(),
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=_writer_factory,
        context_class=dict,
        # Not cached: configure() may run again (tests, a worker re-configuring after start).
        cache_logger_on_first_use=False,
    )


class _Writer:
    """structlog's output: each rendered event on its own line(s) of the stream, after
    ending a progress line left open."""

    def msg(self, message: str) -> None:
        _write_line(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _writer_factory(*_args: Any) -> _Writer:
    return _Writer()


def _write_line(text: str) -> None:
    end_open_line()
    out = sys.stderr if _stream is None else _stream
    out.write(text + "\n")
    out.flush()


def hold_line(end: Callable[[], None] | None) -> None:
    """Say that the stream's current line is left open (a progress bar drawn with ``\\r``);
    ``end`` ends it, and is called before the next log line is written. None: closed."""
    global _open_line
    _open_line = end


def end_open_line() -> None:
    """End the line a progress bar left open, if any (before writing a line of one's own)."""
    global _open_line
    end, _open_line = _open_line, None
    if end is not None:
        end()


def write_event(level: str, event: str, **fields: Any) -> None:
    """Write one event at once, in this process's format, without structlog or the level
    filter: for the lines a command always prints (its ERROR and HINT lines)."""
    line = {"event": event, **{k: v for k, v in fields.items() if v is not None}}
    line["level"] = level
    line["timestamp"] = time.time()
    _write_line(render_json(line) if _format == "json" else render_text(line))


def write_error(msg: str, hint: str | None = None, exception: str | None = None) -> None:
    """The CLI's report of a failure: ``ERROR: <time> msg`` and ``HINT: <time> hint`` lines
    in text, one JSON object with ``hint`` (and ``exception``, the traceback) in JSON."""
    if exception is not None and _format != "json":
        _write_line(exception.rstrip("\n"))
        exception = None
    write_event("error", msg, hint=hint or None, exception=exception)


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


def reset() -> None:
    """Back to the state of a fresh process (text, stderr, nothing pending): for tests."""
    global _pending, _stream, _open_line
    _pending = _stream = _open_line = None
    set_format("text")


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
