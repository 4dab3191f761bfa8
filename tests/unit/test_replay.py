"""The pure parts of backup-verify --replay: versions, binaries, the server's settings, the
restore_command, reading the server log, and refusing root before any storage access."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from walg.backup import replay
from walg.config import load
from walg.errors import ReplayUnavailable
from walg.postgres import binaries, server
from walg.postgres.server import ServerEnd


@pytest.mark.parametrize(
    ("number", "major"), [(150018, "15"), (100000, "10"), (90624, "9.6"), (170002, "17")]
)
def test_major_version(number: int, major: str) -> None:
    """server_version_num to the major version PostgreSQL packages are named by."""
    assert binaries.major_version(number) == major


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ("PostgreSQL 15.18 (Debian 15.18-0+deb12u1)", "15"),
        ("PostgreSQL 9.6.24", "9.6"),
        ("PostgreSQL 17devel", "17"),
        ("something else", None),
    ],
)
def test_pg_config_version(text: str, major: str | None) -> None:
    """`pg_config --version` output to a major version."""
    assert binaries.parse_pg_config_version(text) == major


def _fake_bin(root: Path, major: str) -> Path:
    bindir = root / major / "bin"
    bindir.mkdir(parents=True)
    for program in ("postgres", "pg_controldata"):
        path = bindir / program
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bindir


def test_find_bindir_falls_back_to_the_debian_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a pg_config of that version, /usr/lib/postgresql/MAJOR/bin is used."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bindir = _fake_bin(tmp_path, "13")
    assert binaries.find_bindir("13", debian_root=str(tmp_path)) == str(bindir)


def test_find_bindir_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version that is not installed: one error naming where walg looked and the fix."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ReplayUnavailable) as caught:
        binaries.find_bindir("11", debian_root=str(tmp_path))
    assert "PostgreSQL 11 server programs not found" in caught.value.msg
    assert "no pg_config in PATH" in caught.value.msg
    assert "postgresql-11" in caught.value.hint
    assert caught.value.exit_code == 2


def _settings(major: str) -> dict[str, str]:
    return server.server_settings(
        data_dir="/w/data", work_dir="/w", restore_command="wal-g wal-fetch %f %p", major=major,
        control={"max_prepared_transactions": "5"},
    )


def test_server_settings_are_private_and_stop_at_consistency() -> None:
    """No TCP, socket in the work directory, no archiving, stop once consistent; the other
    recovery targets are cleared before recovery_target is set (PostgreSQL refuses two)."""
    values = _settings("15")
    assert values["listen_addresses"] == ""
    assert values["unix_socket_directories"] == "/w"
    assert values["archive_mode"] == "off"
    assert values["hot_standby"] == "off"
    assert values["data_directory"] == "/w/data"
    assert values["recovery_target"] == "immediate"
    assert values["recovery_target_action"] == "shutdown"
    assert values["max_prepared_transactions"] == "5"
    names = list(values)
    assert names.index("recovery_target_time") < names.index("recovery_target")
    assert "stats_temp_directory" not in values


def test_old_versions_get_recovery_conf() -> None:
    """Before PostgreSQL 12 the recovery settings go to recovery.conf, not the command line."""
    assert server.recovery_conf_needed("11") and server.recovery_conf_needed("9.6")
    assert not server.recovery_conf_needed("12")
    values = _settings("11")
    assert "recovery_target" not in values and "restore_command" not in values
    text = server.recovery_conf_text("it's %f")
    assert "restore_command = 'it''s %f'\n" in text
    assert "recovery_target = 'immediate'\n" in text


def test_restore_command_is_this_walg_with_the_same_config() -> None:
    """The same wal-g and config file, wal-fetch alone; words quoted, % doubled."""
    settings = load({"WALG_FILE_PREFIX": "/s"}, config_file=None)
    command = replay.replay_restore_command(settings, ["/opt/my walg/wal-g"])
    assert command == "'/opt/my walg/wal-g' wal-fetch --no-prefetch %f %p"
    with_file = settings.__class__(config_file="/etc/50%.json")
    command = replay.replay_restore_command(with_file, ["/usr/bin/wal-g"])
    assert command == "/usr/bin/wal-g --config /etc/50%%.json wal-fetch --no-prefetch %f %p"


LOG = [
    "2026-12-07 00:13:48.184 UTC [9902] LOG:  starting backup recovery with redo LSN 0/3000028",
    "ERROR: WAL file 000000010000000000000003 is not in the archive at file:///s/ (tried ...)",
    "2026-12-07 00:13:48.310 UTC [9902] FATAL:  could not locate required checkpoint record",
    "2026-12-07 00:13:48.315 UTC [9898] LOG:  database system is shut down",
]


def test_failure_names_the_fatal_line_and_the_missing_segment() -> None:
    """The error's message: the server's FATAL line and the segments not in the archive;
    its hint: the log's last lines."""
    err = replay._failure("base_X", ServerEnd(1, None), LOG, 1800)
    assert err.msg == (
        "backup base_X did not reach a consistent state (could not locate required "
        "checkpoint record; not in the archive: 000000010000000000000003)"
    )
    assert "  " + LOG[-1] in err.hint
    timeout = replay._failure("base_X", ServerEnd(None, None), [], 60)
    assert "within 60 s" in timeout.msg and "WALG_REPLAY_TIMEOUT" in timeout.hint


def test_consistency_is_read_from_the_log() -> None:
    """The LSN of "consistent recovery state reached", or None."""
    line = "2026-12-07 00:13:13.100 UTC [1] LOG:  consistent recovery state reached at 0/3000100"
    assert server.consistent_at([*LOG, line]) == "0/3000100"
    assert server.consistent_at(LOG) is None


def test_root_is_refused_before_storage_is_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    """As root: ReplayUnavailable naming the fix, and no storage opened."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def no_storage(*_args: object) -> None:
        raise AssertionError("storage opened")

    monkeypatch.setattr(replay, "open_storage", no_storage)
    with pytest.raises(ReplayUnavailable) as caught:
        replay.replay_backup(load({"WALG_FILE_PREFIX": "/nonexistent"}), "LATEST")
    assert "refuses to run as root" in caught.value.msg
    assert "sudo -u postgres wal-g backup-verify --replay" in caught.value.hint
