"""Recovery settings written by backup-fetch for PITR and standbys."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from walg.backup.recovery import (
    CONFIG_NAME,
    RecoveryOptions,
    disable_previous,
    recovery_lines,
    restore_command,
    walg_command,
    write_recovery,
)
from walg.config import load
from walg.errors import ConfigError
from walg.format.scan import is_excluded


def test_nothing_requested_by_default() -> None:
    """Without options backup-fetch writes nothing beyond the data, as WAL-G."""
    assert not RecoveryOptions().requested
    assert RecoveryOptions(target_name="before_upgrade").requested
    assert RecoveryOptions(standby=True).requested


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RecoveryOptions(target_time="2024-01-01", target_name="x"), "at most one"),
        (RecoveryOptions(target_action="promote"), "needs a target"),
        (RecoveryOptions(standby=True, target_lsn="0/1"), "takes no recovery target"),
        (RecoveryOptions(target_lsn="banana"), "is not an LSN"),
    ],
)
def test_invalid_combinations_are_refused(options: RecoveryOptions, message: str) -> None:
    """Options PostgreSQL would refuse at start-up fail before anything is restored."""
    with pytest.raises(ConfigError, match=message):
        options.check()


def test_restore_command_quotes_paths() -> None:
    """Paths are shell-quoted; %f and %p are left for PostgreSQL."""
    command = restore_command(["/opt/my tools/wal-g"], "/data/x/walg_restore.json")
    assert command == (
        "'/opt/my tools/wal-g' --config /data/x/walg_restore.json wal-fetch %f %p"
    )
    assert walg_command("/usr/bin/wal-g") == ["/usr/bin/wal-g"]
    assert walg_command("/x/walg/__main__.py")[1:] == ["-m", "walg"]


def test_recovery_lines() -> None:
    """Targets become recovery_target_* lines with quotes doubled."""
    options = RecoveryOptions(target_time="2024-05-06 07:08:09+00", target_action="promote")
    assert recovery_lines(options, "cmd 'x'") == [
        "restore_command = 'cmd ''x'''",
        "recovery_target_time = '2024-05-06 07:08:09+00'",
        "recovery_target_action = 'promote'",
    ]
    assert recovery_lines(RecoveryOptions(target_lsn="0/3000060"), "c")[1] == (
        "recovery_target_lsn = '0/3000060'"
    )


def test_write_recovery(tmp_path: Path) -> None:
    """The config (0600, same settings), the recovery lines and the signal file are written."""
    (tmp_path / "postgresql.auto.conf").write_text("max_connections = 10\n")
    settings = load({"WALG_FILE_PREFIX": "/backups", "WALG_COMPRESSION_METHOD": "brotli",
                     "PGHOST": "/run/pg"})
    write_recovery(str(tmp_path), RecoveryOptions(standby=True), settings)
    config = tmp_path / CONFIG_NAME
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {
        "WALG_COMPRESSION_METHOD": "brotli", "WALG_FILE_PREFIX": "/backups",
    }
    auto = (tmp_path / "postgresql.auto.conf").read_text()
    assert auto.startswith("max_connections = 10\n")
    assert f"--config {config} wal-fetch %f %p" in auto
    assert (tmp_path / "standby.signal").exists() and not (tmp_path / "recovery.signal").exists()
    assert load({}, str(config)).compression.method == "brotli"


def test_restore_config_is_never_backed_up() -> None:
    """walg_restore.json (it may hold keys) is excluded from base backups."""
    assert is_excluded(CONFIG_NAME, False)


def test_settings_of_an_earlier_fetch_are_disabled(tmp_path: Path) -> None:
    """A backup of a cluster once restored with --target-time carries those settings; the
    next backup-fetch comments out exactly them, once."""
    conf = tmp_path / "postgresql.auto.conf"
    original = [
        "work_mem = '64MB'\n",
        "\n",
        "# written by wal-g backup-fetch\n",
        "restore_command = 'wal-g --config /old/walg_restore.json wal-fetch %f %p'\n",
        "recovery_target_time = '2026-01-01 00:00:00+00'\n",
        "recovery_target_action = 'promote'\n",
        "recovery_target_timeline = 'latest'\n",
    ]
    conf.write_text("".join(original))
    assert disable_previous(str(tmp_path))
    lines = conf.read_text().splitlines(keepends=True)
    assert lines[:3] == original[:3]
    assert all(line.startswith("# disabled by a later wal-g backup-fetch: ") for line in lines[3:6])
    assert [line.split(": ", 1)[1] for line in lines[3:6]] == original[3:6]
    assert lines[6] == original[6]  # not ours: left alone
    assert not disable_previous(str(tmp_path))  # nothing left to disable
    assert not disable_previous(str(tmp_path / "missing"))


def test_recovery_files_are_replaced_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """postgresql.auto.conf is never left truncated: when making the new content durable
    fails, the old content stays, the error surfaces, and no temporary file is left."""
    conf = tmp_path / "postgresql.auto.conf"
    conf.write_text("shared_buffers = '1GB'\n")
    conf.chmod(0o640)
    settings = load({"WALG_FILE_PREFIX": "/backups"})

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_recovery(str(tmp_path), RecoveryOptions(standby=True), settings)
    assert conf.read_text() == "shared_buffers = '1GB'\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".walg-")]
    monkeypatch.undo()
    write_recovery(str(tmp_path), RecoveryOptions(standby=True), settings)
    assert conf.read_text().startswith("shared_buffers = '1GB'\n")
    assert "restore_command" in conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640  # the cluster's own mode is kept
