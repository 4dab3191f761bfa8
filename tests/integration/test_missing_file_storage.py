"""A WALG_FILE_PREFIX folder that does not exist (issue 18 item 4), through the real wal-g.

Read commands say the folder is missing, with a hint, and exit non-zero, instead of "No
backups found" or an empty listing: an unmounted backup disk or a typo must not look like
an empty archive. wal-fetch in particular exits 200 (recovery aborts), never 74 (the end
of the archive, after which the server would promote). Pushes create the folder, as
WAL-G's do (a first wal-push or backup-push into a new folder is the normal start).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from walg.errors import EX_ABORT_RECOVERY
from walg.postgres.wal_format import LONG_HEADER_SIZE, LongPageHeader

WALG = str(Path(sys.executable).parent / "wal-g")
SEGMENT = 1 << 20
NAME = "000000010000000000000001"
BACKUP = "base_000000010000000000000002"

READS = {
    "backup-list": ["backup-list"],
    "backup-list --json": ["backup-list", "--json"],
    "backup-list --detail": ["backup-list", "--detail"],
    "backup-fetch": ["backup-fetch", "restored", "LATEST"],
    "backup-verify": ["backup-verify", "LATEST"],
    "backup-mark": ["backup-mark", BACKUP],
    "delete retain": ["delete", "retain", "1"],
    "delete before": ["delete", "before", BACKUP, "--confirm"],
    "wal-show": ["wal-show"],
    "wal-verify": ["wal-verify", "integrity", "timeline"],
    "st ls": ["st", "ls"],
    "st get": ["st", "get", f"wal_005/{NAME}.lz4", "out"],
    "st cat": ["st", "cat", f"wal_005/{NAME}.lz4"],
    "st rm": ["st", "rm", f"wal_005/{NAME}.lz4"],
    "wal-fetch": ["wal-fetch", NAME, "pg_wal/RECOVERYXLOG"],
}


def run(root: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    scrub = ("WALG_", "WALE_", "AWS_", "GOOGLE_", "GCS_", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrub)}
    env.update(WALG_FILE_PREFIX=str(store), PGHOST=str(root / "no-server"), PGCONNECT_TIMEOUT="2")
    return subprocess.run([WALG, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A folder shaped like PGDATA with one ready segment; the storage folder is missing."""
    pg_wal = tmp_path / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    header = LongPageHeader(0xD110, 2, 1, SEGMENT, 0, 7, SEGMENT, 8192)
    (pg_wal / NAME).write_bytes(header.pack() + bytes(SEGMENT - LONG_HEADER_SIZE))
    (pg_wal / "archive_status" / f"{NAME}.ready").touch()
    return tmp_path


@pytest.mark.parametrize("command", list(READS))
def test_read_commands_report_the_missing_folder(root: Path, command: str) -> None:
    """Each read command names the missing folder, hints at the setting and the mount, and
    exits non-zero; it creates nothing."""
    store = root / "unmounted" / "archive"
    done = run(root, store, *READS[command])
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    assert errors, done.stderr
    assert f"the storage folder {store} does not exist" in errors[0]
    assert any(line.startswith("HINT") and "WALG_FILE_PREFIX" in line for line in lines)
    assert done.returncode != 0
    if command == "wal-fetch":
        assert done.returncode == EX_ABORT_RECOVERY  # never 74: that would end recovery
    assert "No backups found" not in done.stderr + done.stdout
    assert done.stdout.strip() in ("", "[]") or "ERROR" in done.stdout
    assert not store.exists() and not (root / "unmounted").exists()


def test_wal_push_creates_the_folder(root: Path) -> None:
    """A push into a folder that does not exist yet creates it, as WAL-G's does, and the
    read commands then work on it."""
    store = root / "new" / "archive"
    pushed = run(root, store, "wal-push", f"pg_wal/{NAME}")
    assert pushed.returncode == 0, pushed.stderr
    assert (store / "wal_005" / f"{NAME}.lz4").is_file()
    listed = run(root, store, "backup-list")
    assert listed.returncode == 0, listed.stderr
    assert "No backups found" in listed.stderr


def test_an_empty_folder_is_an_empty_archive(root: Path) -> None:
    """A folder that exists but holds nothing is still 'No backups found', exit 0."""
    store = root / "empty"
    store.mkdir()
    listed = run(root, store, "backup-list")
    assert listed.returncode == 0, listed.stderr
    assert "No backups found" in listed.stderr
