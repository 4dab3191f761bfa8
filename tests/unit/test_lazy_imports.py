"""Heavy optional libraries stay unloaded until a command really needs them.

``archive_command`` runs ``wal-g wal-push`` once per WAL segment; importing boto3 or
google-cloud-storage costs 150-250 ms each, so the CLI must not load them for file storage.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import cast

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


# The wal-push/wal-fetch call, split where walg.cli hands over to the command's module:
# "front" is what the command line and the settings cost, "all" the whole call.
LEAN_PROBE = """
import os, sys
from walg import cli
front = []
def load(name):
    front.extend(sys.modules)
    return __import__(cli.LEAN_COMMANDS[name][0], fromlist=["run"]).run
code = cli.main(sys.argv[1:], environ=dict(os.environ), load_command=load)
loaded = list(sys.modules)
import json
print()
print(json.dumps({"code": code, "front": sorted(front), "all": sorted(loaded)}))
"""

#: Not loaded before a wal command's module: the full grammar, the config file's and the
#: unusual settings' helpers, and what only errors, retries, listings or logs need.
FRONT_UNNEEDED = (
    "argparse", "walg.cli_parser", "json", "decimal", "walg.config.unsupported", "datetime",
    "random", "logging", "shutil", "locale", "gettext", "pathlib", "urllib", "ipaddress",
    "walg.storage", "structlog", "multiprocess",
)
#: Not loaded by a whole wal-push or wal-fetch of plain lz4 WAL on file storage.
CALL_UNNEEDED = (
    *HEAVY, "google", "structlog", "multiprocess", "walg.cli_parser", "walg.config.unsupported",
    "walg.storage.s3", "walg.storage.gcs", "walg.crypto", "walg.pipeline", "walg.stages",
    "walg.backup",
)


def among(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    """The modules in ``modules`` that are, or are inside, one of ``packages``."""
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def lean_call(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, object]:
    """Run ``walg.cli.main(argv)`` in a fresh interpreter (as one call of its own, so no
    background process is started); return its exit code and the modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", LEAN_PROBE, *argv],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return result


@pytest.fixture
def lean_env(tmp_path: Path, clean_env: dict[str, str], walg_env: dict[str, str]) -> dict[str, str]:
    """A stock configuration: lz4 to file storage, no config file."""
    return {**clean_env, **walg_env, "WALG_COMPRESSION_METHOD": "lz4", "HOME": str(tmp_path)}


@pytest.fixture
def valid_segment(tmp_path: Path) -> Path:
    """A 16 MiB WAL segment whose long page header fits its name."""
    size = 16 << 20
    header = struct.pack("<HHIQI4xQII", 0xD110, 0x0002, 1, size, 0, 7, size, 8192)
    segment = tmp_path / "pg_wal" / "000000010000000000000001"
    segment.parent.mkdir(exist_ok=True)
    segment.write_bytes(header + bytes(range(256)) * ((size - len(header)) // 256 + 1))
    with segment.open("r+b") as file:
        file.truncate(size)
    return segment


def test_wal_commands_start_lean(
    tmp_path: Path, valid_segment: Path, lean_env: dict[str, str]
) -> None:
    """The command line and settings of wal-push and wal-fetch (archive_command and
    restore_command, once per segment) load no argparse, json, decimal, datetime, logging
    or storage module; the whole calls load no cloud, gpg, PostgreSQL, structlog or
    pipeline module."""
    segment = str(valid_segment.relative_to(tmp_path))
    fetch = ["wal-fetch", "--no-prefetch", valid_segment.name, "pg_wal/RECOVERYXLOG"]
    for argv in (["wal-push", segment], fetch):
        result = lean_call(argv, lean_env, tmp_path)
        front, loaded = cast(list[str], result["front"]), cast(list[str], result["all"])
        assert "walg.config.settings" in front
        assert among(front, FRONT_UNNEEDED) == [], argv
        assert among(loaded, CALL_UNNEEDED) == [], argv
    assert (tmp_path / "pg_wal" / "RECOVERYXLOG").read_bytes() == valid_segment.read_bytes()


def test_config_file_alone_adds_json(
    tmp_path: Path, valid_segment: Path, lean_env: dict[str, str]
) -> None:
    """``--config FILE`` loads json to read it, and nothing else of the full path."""
    config = tmp_path / "walg.json"
    config.write_text(json.dumps({"WALG_FILE_PREFIX": lean_env.pop("WALG_FILE_PREFIX")}))
    argv = ["--config", str(config), "wal-push", str(valid_segment.relative_to(tmp_path))]
    front = cast(list[str], lean_call(argv, lean_env, tmp_path)["front"])
    assert "json" in front
    assert among(front, tuple(m for m in FRONT_UNNEEDED if m != "json")) == []
