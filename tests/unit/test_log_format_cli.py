"""What the installed ``wal-g`` writes to stderr: every line in one format, WAL-G's text by
default and JSON objects with WALG_LOG_FORMAT=json, ERROR and HINT lines included."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from servers.logtext import LINE

MISSING = "pg_wal/000000010000000000000099"


def wal_g(
    venv_bin: Path, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_bin / "wal-g"), *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


@pytest.fixture
def env(clean_env: dict[str, str], walg_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    (tmp_path / "pg_wal").mkdir()
    return {**clean_env, **walg_env, "HOME": str(tmp_path),
            "WALG_WAL_BACKGROUND": "false", "WALG_UNKNOWN_THING": "1"}  # fmt: skip


def test_failing_wal_push_writes_text_lines(
    venv_bin: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """By default (a pipe, as archive_command's stderr) every line is a WAL-G text line:
    the unknown-setting WARNING, the ERROR and its HINT."""
    done = wal_g(venv_bin, ["wal-push", MISSING], env, tmp_path)
    assert done.returncode == 1
    lines = [LINE.match(line) for line in done.stderr.splitlines()]
    assert all(lines), done.stderr
    labels = [m[1] for m in lines if m]
    assert labels == ["WARNING", "ERROR", "HINT"], done.stderr
    assert f"WAL file {MISSING} does not exist" in done.stderr


def test_failing_wal_push_writes_json_lines(
    venv_bin: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """WALG_LOG_FORMAT=json: every line is one JSON object; the hint is a key of the error's."""
    done = wal_g(venv_bin, ["wal-push", MISSING], {**env, "WALG_LOG_FORMAT": "json"}, tmp_path)
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert [r["level"] for r in records] == ["warning", "error"], done.stderr
    error = records[-1]
    assert error["event"] == f"WAL file {MISSING} does not exist" and error["hint"]
    assert all(r["timestamp"].endswith("Z") for r in records)


def test_a_bad_log_format_is_refused_in_text(
    venv_bin: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """An unknown WALG_LOG_FORMAT is a settings error (exit 2), written as text."""
    done = wal_g(venv_bin, ["backup-list"], {**env, "WALG_LOG_FORMAT": "xml"}, tmp_path)
    assert done.returncode == 2
    labels = [m[1] for m in map(LINE.match, done.stderr.splitlines()) if m]
    assert labels == ["ERROR", "HINT"] and "WALG_LOG_FORMAT='xml'" in done.stderr


def test_json_from_a_config_file(venv_bin: Path, env: dict[str, str], tmp_path: Path) -> None:
    """WALG_LOG_FORMAT set in the config file applies to the error lines too."""
    config = tmp_path / ".walg.json"
    config.write_text(json.dumps({"WALG_LOG_FORMAT": "json"}))
    done = wal_g(venv_bin, ["wal-push", MISSING], env, tmp_path)
    assert done.returncode == 1
    assert [json.loads(line)["level"] for line in done.stderr.splitlines()][-1] == "error"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_empty_backup_list_says_so_in_the_log_format(
    venv_bin: Path, env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """"No backups found" is an INFO line (WAL-G's InfoLogger) in the stream's one format,
    not a bare line among JSON objects; stdout stays the listing ([] with --json)."""
    store = tmp_path / "empty-store"
    store.mkdir()
    settings = {**env, "WALG_FILE_PREFIX": str(store), "WALG_LOG_FORMAT": fmt}
    done = wal_g(venv_bin, ["backup-list", "--json"], settings, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    lines = done.stderr.splitlines()
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert [r["event"] for r in records if r["level"] == "info"] == ["No backups found"]
    else:
        matched = [LINE.match(line) for line in lines]
        assert all(matched), done.stderr
        assert [(m[1], m[3]) for m in matched if m and m[1] == "INFO"] == [
            ("INFO", "No backups found")
        ]
