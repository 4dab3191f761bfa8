"""wal-fetch's exit codes as restore_command: 0 restored, 74 not archived, 200 (stop
recovery) for every other failure in archive recovery; a standby keeps walg's own code."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from test_wal_fetch import compressed, key_of, name_of, segment  # type: ignore[import-not-found]

from walg.errors import EX_ABORT_RECOVERY, EX_NOT_FOUND
from walg.storage.file import FileStorage
from walg.wal.restore_exit import fetch_destination, is_standby, restore_exit_code


@pytest.mark.parametrize(
    ("code", "standby", "expected"),
    [
        (0, False, 0),
        (EX_NOT_FOUND, False, EX_NOT_FOUND),
        (1, False, EX_ABORT_RECOVERY),
        (2, False, EX_ABORT_RECOVERY),
        (125, False, EX_ABORT_RECOVERY),
        (130, False, 130),
        (143, False, 143),
        (1, True, 1),
        (2, True, 2),
        (EX_NOT_FOUND, True, EX_NOT_FOUND),
    ],
)
def test_restore_exit_code_table(code: int, standby: bool, expected: int) -> None:
    """Only "restored" and "not archived" keep a code PostgreSQL reads as such; any other
    failure exits above 125 in archive recovery; a standby keeps walg's code."""
    assert restore_exit_code(code, standby) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["wal-fetch", "N", "pg_wal/RECOVERYXLOG"], "pg_wal/RECOVERYXLOG"),
        (["--config", "c.json", "wal-fetch", "--no-prefetch", "N", "D"], "D"),
        (["--config=c.json", "wal-fetch", "N"], ""),
        (["wal-fetch"], ""),
        (["wal-push", "pg_wal/X"], None),
        (["--config", "wal-fetch", "wal-push", "X"], None),
        ([], None),
    ],
)
def test_fetch_destination(argv: list[str], expected: str | None) -> None:
    """A wal-fetch command line is recognised even when malformed (DEST "" if missing)."""
    assert fetch_destination(argv) == expected


def test_standby_detection(tmp_path: Path) -> None:
    """standby.signal, or standby_mode = on in a pre-12 recovery.conf, means a standby."""
    assert not is_standby(str(tmp_path))
    (tmp_path / "recovery.conf").write_text("restore_command = 'x'\nstandby_mode = 'off'\n")
    assert not is_standby(str(tmp_path))
    (tmp_path / "recovery.conf").write_text("restore_command = 'x'\nstandby_mode = on\n")
    assert is_standby(str(tmp_path))
    (tmp_path / "recovery.conf").unlink()
    (tmp_path / "standby.signal").touch()
    assert is_standby(str(tmp_path))


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    """A data directory with pg_wal, where PostgreSQL runs restore_command."""
    path = tmp_path / "pgdata"
    (path / "pg_wal").mkdir(parents=True)
    return path


@pytest.fixture
def store(tmp_path: Path) -> FileStorage:
    """An archive holding segment 1 whole and segment 2 cut short."""
    store = FileStorage(str(tmp_path / "store"))
    store.put_object(key_of(name_of(1), "lz4"), compressed(segment(1), "lz4"))
    store.put_object(key_of(name_of(2), "lz4"), compressed(segment(2), "lz4")[:-500])
    return store


def wal_fetch(
    pgdata: Path, env: dict[str, str], *args: str, fsize: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``wal-g wal-fetch ARGS`` run as PostgreSQL runs restore_command (cwd PGDATA), with
    file writes limited to ``fsize`` bytes if given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "WALE_"))}

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "walg", "wal-fetch", *args],
        cwd=pgdata, env={**base, **env}, capture_output=True, text=True, timeout=60,
        preexec_fn=limit,
    )  # fmt: skip


def cases(store: FileStorage) -> dict[str, tuple[dict[str, str], list[str], int | None, int]]:
    """id -> (environment, arguments, write limit, exit code in archive recovery)."""
    env = {"WALG_FILE_PREFIX": store.directory}
    dest = "pg_wal/RECOVERYXLOG"
    return {
        "restored": (env, ["--no-prefetch", name_of(1), dest], None, 0),
        "not archived": (env, ["--no-prefetch", name_of(9), dest], None, EX_NOT_FOUND),
        "truncated object": (env, ["--no-prefetch", name_of(2), dest], None, EX_ABORT_RECOVERY),
        "bad setting": ({**env, "WALG_COMPRESSION_METHOD": "zip"}, [name_of(1), dest], None,
                        EX_ABORT_RECOVERY),
        "no storage configured": ({}, [name_of(1), dest], None, EX_ABORT_RECOVERY),
        "usage: no DEST": (env, [name_of(1)], None, EX_ABORT_RECOVERY),
        "destination write fails": (env, ["--no-prefetch", name_of(1), dest], 64 << 10,
                                    EX_ABORT_RECOVERY),
    }  # fmt: skip


CASES = list(cases(FileStorage("/nonexistent")))


@pytest.mark.parametrize("case", CASES)
def test_wal_fetch_exit_codes_in_archive_recovery(
    case: str, pgdata: Path, store: FileStorage
) -> None:
    """In archive recovery, only a missing file may end recovery (74); a damaged object,
    bad settings, a usage error or a failed write exit 200 with an ERROR line and a HINT
    saying why, and leave no file behind."""
    env, args, fsize, expected = cases(store)[case]
    done = wal_fetch(pgdata, env, *args, fsize=fsize)
    assert done.returncode == expected, done.stderr
    if expected == EX_ABORT_RECOVERY:
        assert "ERROR" in done.stderr or "error:" in done.stderr
        assert "so that PostgreSQL aborts recovery" in done.stderr
        assert "Traceback" not in done.stderr
    if expected != 0:
        assert os.listdir(pgdata / "pg_wal") == []


@pytest.mark.parametrize("case", CASES)
def test_wal_fetch_exit_codes_on_a_standby(case: str, pgdata: Path, store: FileStorage) -> None:
    """On a standby (standby.signal) failures keep walg's own code (below 126): PostgreSQL
    retries restore_command instead of shutting the standby down."""
    env, args, fsize, expected = cases(store)[case]
    (pgdata / "standby.signal").touch()
    done = wal_fetch(pgdata, env, *args, fsize=fsize)
    if expected == EX_ABORT_RECOVERY:
        assert 0 < done.returncode <= 125 and done.returncode != EX_NOT_FOUND, done.stderr
        assert "aborts recovery" not in done.stderr
    else:
        assert done.returncode == expected, done.stderr
