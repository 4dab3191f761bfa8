"""Heavy optional libraries stay unloaded until a command really needs them.

``archive_command`` runs ``wal-g wal-push`` once per WAL segment; importing boto3 or
google-cloud-storage costs 150-250 ms each, so the CLI must not load them for file storage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("boto3", "botocore", "google.cloud.storage", "gnupg", "psycopg2")

PROBE = """
import json, sys
from walg.cli import main
main(json.loads(sys.argv[1]))
print()
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """Run ``walg.cli.main(argv)`` in a fresh interpreter; return the modules it had loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def heavy(modules: list[str]) -> list[str]:
    """The modules in ``modules`` that are, or are inside, one of the HEAVY packages."""
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.fixture
def wal_segment(tmp_path: Path) -> Path:
    """A 16 MiB WAL segment file, as PostgreSQL hands it to archive_command."""
    segment = tmp_path / "pg_wal" / "000000010000000000000001"
    segment.parent.mkdir()
    segment.write_bytes(bytes(16 << 20))
    return segment


def test_wal_push_on_file_storage_loads_no_heavy_library(
    tmp_path: Path, wal_segment: Path, clean_env: dict[str, str], walg_env: dict[str, str]
) -> None:
    """``wal-g wal-push`` with WALG_FILE_PREFIX imports no cloud, gpg or PostgreSQL library."""
    env = {**clean_env, **walg_env}
    modules = loaded_modules(["wal-push", str(wal_segment)], env, tmp_path)
    assert "walg.cli" in modules
    assert heavy(modules) == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["no-such-command"]])
def test_cli_start_loads_no_heavy_library(
    argv: list[str], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Help, version and usage errors import no cloud, gpg or PostgreSQL library."""
    modules = loaded_modules(argv, clean_env, tmp_path)
    assert "walg.cli" in modules
    assert heavy(modules) == []
