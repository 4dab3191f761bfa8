"""walg.logs: structlog configuration and re-logging of worker events."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import capture_logs

from walg import logs


class TtyStream(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_when_not_a_tty() -> None:
    """On a non-terminal stream each event is one JSON object with level and ISO UTC time."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    structlog.get_logger().info("segment archived", segment="000000010000000000000001")
    (line,) = lines(out)
    record = json.loads(line)
    assert record["event"] == "segment archived"
    assert record["level"] == "info"
    assert record["segment"] == "000000010000000000000001"
    stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)


def test_console_lines_on_a_tty() -> None:
    """On a terminal events are rendered for humans, not as JSON."""
    out = TtyStream()
    logs.configure("INFO", stream=out)
    structlog.get_logger().warning("slow upload", seconds=12)
    (line,) = lines(out)
    assert "slow upload" in line
    assert "warning" in line
    assert "seconds=12" in line
    assert not line.startswith("{")


def test_json_can_be_forced_on_a_tty() -> None:
    """``json=True`` overrides terminal detection."""
    out = TtyStream()
    logs.configure("INFO", stream=out, json=True)
    structlog.get_logger().info("hello")
    assert json.loads(lines(out)[0])["event"] == "hello"


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("DEBUG", ["debug", "info", "warning", "error"]),
        ("INFO", ["info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("ERROR", ["error"]),
    ],
)
def test_level_filtering(level: str, shown: list[str]) -> None:
    """Events below the configured level are dropped."""
    out = io.StringIO()
    logs.configure(level, stream=out)
    log = structlog.get_logger()
    for method in ("debug", "info", "warning", "error"):
        getattr(log, method)(method)
    assert [json.loads(line)["event"] for line in lines(out)] == shown


def test_unknown_level_is_rejected() -> None:
    """A level name that is not a stdlib level raises ValueError (config validates earlier)."""
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure("LOUD", stream=io.StringIO())


def test_exception_is_rendered_into_the_json_line() -> None:
    """``log.exception`` puts the formatted traceback into the JSON object."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        structlog.get_logger().exception("upload failed")
    record = json.loads(lines(out)[0])
    assert record["level"] == "error"
    assert "RuntimeError: disk on fire" in record["exception"]


def test_capture_logs_respects_the_configured_level() -> None:
    """Under capture_logs, events keep their fields and the level filter still applies."""
    logs.configure("INFO", stream=io.StringIO())
    with capture_logs() as captured:
        log = logs.get_logger(stage="upload")
        log.debug("hidden")
        log.info("part uploaded", part=3)
    assert captured == [
        {"event": "part uploaded", "log_level": "info", "stage": "upload", "part": 3}
    ]


def test_emit_relogs_a_worker_event_at_its_level() -> None:
    """A worker's event dict is logged by the parent with its level, event and fields."""
    logs.configure("INFO", stream=io.StringIO())
    with capture_logs() as captured:
        logs.emit({"event": "compressed", "level": "warning", "stage": "lz4", "worker": 2})
    assert captured == [
        {"event": "compressed", "log_level": "warning", "stage": "lz4", "worker": 2}
    ]


def test_emit_applies_the_parent_level() -> None:
    """A worker's debug event is dropped when the parent logs at INFO."""
    logs.configure("INFO", stream=io.StringIO())
    with capture_logs() as captured:
        logs.emit({"event": "chatty", "level": "debug"})
    assert captured == []


def test_emit_keeps_the_worker_timestamp() -> None:
    """The time the worker stamped is kept; events without one get the parent's time."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    logs.emit({"event": "a", "level": "info", "timestamp": "2024-01-02T03:04:05.000006Z"})
    logs.emit({"event": "b", "level": "error"})
    first, second = (json.loads(line) for line in lines(out))
    assert first == {"event": "a", "level": "info", "timestamp": "2024-01-02T03:04:05.000006Z"}
    assert second["level"] == "error"
    assert second["timestamp"] != first["timestamp"]


def test_emit_with_an_unknown_level_logs_at_info() -> None:
    """An unknown level is not lost: it is logged at info with the original level kept."""
    logs.configure("INFO", stream=io.StringIO())
    with capture_logs() as captured:
        logs.emit({"event": "odd", "level": "NOTICE"})
        logs.emit({"event": "warned", "level": "warn"})
    assert captured == [
        {"event": "odd", "log_level": "info", "worker_level": "notice"},
        {"event": "warned", "log_level": "warning"},
    ]


def test_lazy_logging_goes_to_stderr_once_used() -> None:
    """configure() before structlog is loaded still decides where the first line goes:
    stderr (stdout carries command output such as a backup's name)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from walg import logs\n"
        "logs.configure('INFO')\n"
        "assert 'structlog' not in sys.modules\n"
        "logs.get_logger('walg').info('hello', n=1)\n"
        "print('result')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "result\n"
    assert '"event": "hello"' in done.stderr


def test_filtered_lines_do_not_load_structlog() -> None:
    """A debug line below the configured level costs nothing: structlog stays unloaded."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from walg import logs\n"
        "logs.configure('INFO')\n"
        "logs.get_logger('walg').debug('quiet', n=1)\n"
        "print('structlog' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout == "False\n" and done.stderr == ""
