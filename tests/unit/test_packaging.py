"""Packaging: the cloud SDKs are extras (walg[s3], walg[gcs], walg[all]) that agree with each
other and with what walg checks; a storage whose SDK is missing fails with one line naming
the extra; `wal-g --help` names the guide installed with the package."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

from walg.cli import main
from walg.cli_parser import build_parser, guide_path
from walg.storage.extras import EXTRAS, require_extra

ROOT = Path(__file__).resolve().parents[2]


def extras() -> dict[str, set[str]]:
    """setup.cfg's extras: name -> the distribution names they require."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    section = cfg["options.extras_require"]
    return {
        name: {re.split(r"[<>=!~\[; ]", line.strip())[0].lower()
               for line in section[name].splitlines()
               if line.strip() and not line.strip().startswith("#")}
        for name in section
    }  # fmt: skip


def test_all_is_s3_and_gcs_and_test_holds_all() -> None:
    """walg[all] is exactly the cloud extras together, and .[test] (make's install line)
    installs them all, so the tests of every storage run."""
    found = extras()
    assert found["all"] == found["s3"] | found["gcs"]
    assert found["all"] <= found["test"]


def test_extras_name_what_walg_checks() -> None:
    """Each storage's check names an extra of setup.cfg that installs the packages it looks
    for."""
    found = extras()
    for _storage, extra, modules in EXTRAS.values():
        assert {package for _module, package in modules} <= found[extra]


def test_cloud_sdks_are_not_core_dependencies() -> None:
    """The core install pulls no cloud SDK, but does hold google-crc32c (walg.checksum)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    core = {re.split(r"[<>=!~\[; ]", line.strip())[0].lower()
            for line in cfg["options"]["install_requires"].splitlines()
            if line.strip() and not line.strip().startswith("#")}  # fmt: skip
    assert not core & extras()["all"]
    assert "google-crc32c" in core


@pytest.mark.parametrize(
    ("prefix", "hidden", "extra"),
    [
        ({"WALG_S3_PREFIX": "s3://bucket/p"}, "boto3", "s3"),
        ({"WALG_S3_PREFIX": "s3://bucket/p"}, "botocore", "s3"),
        ({"WALG_GS_PREFIX": "gs://bucket/p"}, "google.cloud.storage", "gcs"),
        ({"WALG_GS_PREFIX": "gs://bucket/p"}, "google.resumable_media", "gcs"),
    ],
)
def test_missing_sdk_names_the_extra(
    prefix: dict[str, str], hidden: str, extra: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """With the SDK uninstallable (None in sys.modules, as import reads a blocked module),
    a storage command exits 2 with one ERROR line and a HINT naming `pip install
    'walg[EXTRA]'`, and no traceback."""
    monkeypatch.setitem(sys.modules, hidden, None)
    assert main(["backup-list"], environ=prefix) == 2
    err = capsys.readouterr().err
    assert err.count("ERROR:") == 1 and "not installed" in err
    assert f"pip install 'walg[{extra}]'" in err
    assert "Traceback" not in err


def test_installed_sdk_passes_the_check() -> None:
    """In the test environment (.[test]) every storage's SDK is there: no error."""
    for kind in EXTRAS:
        require_extra(kind)
    require_extra("file")


def test_help_names_an_existing_guide() -> None:
    """`wal-g --help` ends with the guide's path, unbroken, and that file is walg's README."""
    text = build_parser().format_help()
    found = re.search(r"installed at\s+(\S+)", text)
    assert found and found.group(1) == guide_path()
    guide = Path(found.group(1))
    assert guide.is_file()
    assert "## Running walg in production" in guide.read_text(encoding="utf-8")


def test_help_from_the_command(venv_bin: Path) -> None:
    """The same through the installed `wal-g` script."""
    done = subprocess.run([str(venv_bin / "wal-g"), "--help"], capture_output=True,
                          text=True, timeout=60, check=True)
    found = re.search(r"installed at\s+(\S+)", done.stdout)
    assert found and Path(found.group(1)).is_file()


def test_guide_is_package_data() -> None:
    """walg/docs/README.md is the README (a link to it in the checkout) and setup.cfg ships
    it as package data; MANIFEST.in puts it in sdists."""
    docs = ROOT / "walg" / "docs" / "README.md"
    assert docs.resolve() == (ROOT / "README.md").resolve()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "docs/README.md" in cfg["options.package_data"]["walg"]
    assert "walg/docs/README.md" in (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
