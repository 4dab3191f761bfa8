"""`pip install walg` without extras, into a real throwaway venv (a wheel built from this
checkout, Debian's python3): wal-g works on file storage, its --help names a guide installed
in the venv, and S3 or GCS, whose SDKs are then genuinely absent, fail with one line
naming the extra. About 10 s with pip's cache warm (bench/install_size.py measures every
extra)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from servers.install import PYTHON, install, source_copy

pytestmark = pytest.mark.skipif(not Path(PYTHON).exists(), reason=f"needs {PYTHON}")


@pytest.fixture
def env(clean_env: dict[str, str]) -> dict[str, str]:
    """The environment without walg's settings, and without a PYTHONPATH that would import
    another walg than the venv's."""
    return {k: v for k, v in clean_env.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a venv holding walg installed with no extra."""
    work = tmp_path_factory.mktemp("install")
    result = install(work / "venv", source_copy(work / "src"), timeout=240)
    assert not {"boto3", "botocore", "google-cloud-storage"} & set(result.packages)
    return result.bin


def test_help_names_the_installed_guide(core: Path, env: dict[str, str]) -> None:
    """--help's last line is the path of README.md inside the venv's walg package."""
    done = subprocess.run([str(core / "wal-g"), "--help"], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    found = re.search(r"installed at\s+(\S+)", done.stdout)
    assert found, done.stdout
    guide = Path(found.group(1))
    assert guide.is_file() and not guide.is_symlink()
    assert guide.is_relative_to(core.parent)
    assert "## Running walg in production" in guide.read_text(encoding="utf-8")


def test_file_storage_works_without_extras(
    core: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """The core install is a working wal-g: a write check on file storage passes."""
    done = subprocess.run([str(core / "wal-g"), "st", "check", "write"],
                          env={**env, "WALG_FILE_PREFIX": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("setting", "url", "extra"),
    [("WALG_S3_PREFIX", "s3://bucket/walg", "s3"), ("WALG_GS_PREFIX", "gs://bucket/walg", "gcs")],
)
def test_cloud_storage_without_its_extra(
    core: Path, env: dict[str, str], setting: str, url: str, extra: str
) -> None:
    """backup-list on S3/GCS with the SDK not installed: exit 2, one ERROR line, a HINT
    naming `pip install 'walg[EXTRA]'`, no traceback."""
    done = subprocess.run([str(core / "wal-g"), "backup-list"], env={**env, setting: url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["ERROR", "HINT"], lines
    assert f"pip install 'walg[{extra}]'" in lines[1]
