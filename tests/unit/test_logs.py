"""walg.logs: structlog configuration and re-logging of worker events."""

from __future__ import annotations

import io
import json
import re
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


TEXT_LINE = re.compile(
    r"^(DEBUG|INFO|WARNING|ERROR|HINT): (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6}) (.*)$"
)


def parse_text(line: str) -> tuple[str, datetime, str]:
    """A WAL-G-style line's level, local time and the rest; fails if it is not one."""
    match = TEXT_LINE.match(line)
    assert match, line
    return match[1], datetime.strptime(match[2], "%Y/%m/%d %H:%M:%S.%f"), match[3]


def test_text_lines_by_default() -> None:
    """By default, in a pipe too, each event is a WAL-G line: level, local time with
    microseconds, the message, then key=value."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    structlog.get_logger().info("segment archived", segment="000000010000000000000001")
    (line,) = lines(out)
    level, stamp, rest = parse_text(line)
    assert (level, rest) == ("INFO", "segment archived segment=000000010000000000000001")
    assert abs(datetime.now() - stamp) < timedelta(minutes=5)  # local time, as WAL-G


def test_text_lines_on_a_tty_too() -> None:
    """A terminal gets the same lines; values with spaces are quoted."""
    out = TtyStream()
    logs.configure("INFO", stream=out)
    structlog.get_logger().warning("slow upload", seconds=12, error="connection refused")
    (line,) = lines(out)
    assert parse_text(line)[0::2] == (
        "WARNING", 'slow upload seconds=12 error="connection refused"'
    )


def test_json_lines_when_asked() -> None:
    """WALG_LOG_FORMAT=json: each event is one JSON object with level and ISO UTC time."""
    out = io.StringIO()
    logs.configure("INFO", stream=out, fmt="json")
    structlog.get_logger().info("segment archived", segment="000000010000000000000001")
    (line,) = lines(out)
    record = json.loads(line)
    assert record["event"] == "segment archived"
    assert record["level"] == "info"
    assert record["segment"] == "000000010000000000000001"
    stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)


def test_json_can_be_forced_on_a_tty() -> None:
    """``json=True`` is ``fmt="json"``, on a terminal as elsewhere."""
    out = TtyStream()
    logs.configure("INFO", stream=out, json=True)
    structlog.get_logger().info("hello")
    assert json.loads(lines(out)[0])["event"] == "hello"


def test_sizes_are_readable_in_text_and_bytes_in_json() -> None:
    """Fields named size/bytes or ending in _bytes read as binary units in text (rates
    per second too); JSON keeps the byte counts."""
    fields = {"size": 1288490189, "done_bytes": 512 << 20, "rate_bytes_per_s": 3 << 20,
              "parts": 3}
    text, data = io.StringIO(), io.StringIO()
    logs.configure("INFO", stream=text)
    structlog.get_logger().info("uploaded", **fields)
    assert parse_text(lines(text)[0])[2] == (
        "uploaded size=1.2 GiB done_bytes=512.0 MiB rate_bytes_per_s=3.0 MiB/s parts=3"
    )
    logs.configure("INFO", stream=data, fmt="json")
    structlog.get_logger().info("uploaded", **fields)
    record = json.loads(lines(data)[0])
    assert {key: record[key] for key in fields} == fields


def test_hint_is_a_line_of_its_own_in_text_and_a_key_in_json() -> None:
    """An error with a hint: ERROR then HINT lines with the same time; one JSON object."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    logs.write_error("no such backup", "run wal-g backup-list")
    first, second = (parse_text(line) for line in lines(out))
    assert (first[0], first[2], second[0], second[2]) == (
        "ERROR", "no such backup", "HINT", "run wal-g backup-list")
    assert first[1] == second[1]
    logs.configure("INFO", stream=out, fmt="json")
    logs.write_error("no such backup", "run wal-g backup-list")
    record = json.loads(lines(out)[-1])
    assert (record["level"], record["event"], record["hint"]) == (
        "error", "no such backup", "run wal-g backup-list")


def test_a_log_line_ends_an_open_progress_line() -> None:
    """A line left open (a progress bar) is ended before a log line is written."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    out.write("\rbar  50%")
    logs.hold_line(lambda: out.write("\n"))
    structlog.get_logger().info("next")
    logs.write_error("failed")
    bar, info, error = out.getvalue().split("\n")[:3]
    assert bar == "\rbar  50%"
    assert parse_text(info)[2] == "next" and parse_text(error)[2] == "failed"


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
    logs.configure(level, stream=out, fmt="json")
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
    logs.configure("INFO", stream=out, fmt="json")
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
    logs.configure("INFO", stream=out, fmt="json")
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
    assert parse_text(done.stderr.splitlines()[0])[2] == "hello n=1"


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


def test_text_traceback_follows_its_line() -> None:
    """In text, ``log.exception`` writes the ERROR line, then the traceback as it is."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        structlog.get_logger().exception("upload failed")
    text = lines(out)
    assert parse_text(text[0])[0::2] == ("ERROR", "upload failed")
    assert text[1] == "Traceback (most recent call last):"
    assert text[-1] == "RuntimeError: disk on fire"


def test_a_worker_timestamp_is_shown_in_local_time() -> None:
    """A worker's ISO UTC timestamp is written as WAL-G's local time in text."""
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    logs.emit({"event": "a", "level": "info", "timestamp": "2024-01-02T03:04:05.000006Z"})
    stamp = parse_text(lines(out)[0])[1]
    assert stamp == datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC).astimezone().replace(
        tzinfo=None)


def test_error_lines_do_not_load_structlog() -> None:
    """The CLI's ERROR/HINT lines are written without structlog (a failing wal-push stays
    quick), in the format asked for."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from walg import logs\n"
        "logs.set_format(sys.argv[1])\n"
        "logs.write_error('boom', 'do this')\n"
        "print('structlog' in sys.modules)\n"
    )
    text = subprocess.run([sys.executable, "-c", code, "text"], capture_output=True,
                          text=True, timeout=60)
    assert text.stdout == "False\n"
    assert [parse_text(line)[0::2] for line in text.stderr.splitlines()] == [
        ("ERROR", "boom"), ("HINT", "do this")]
    data = subprocess.run([sys.executable, "-c", code, "JSON"], capture_output=True,
                          text=True, timeout=60)
    record = json.loads(data.stderr)
    assert (record["event"], record["hint"], record["level"]) == ("boom", "do this", "error")
