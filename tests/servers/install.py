"""Install walg from this checkout into a throwaway virtual environment, as a user would with
pip (a real wheel, not the editable install the tests run from), and measure what it pulls.

Used by tests/integration/test_install_extras.py (the core install, no extras) and by
bench/install_size.py (every extra, with package counts and sizes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What a build of walg reads: the package, its scripts and its metadata.
SOURCE = ("setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "bin", "walg")
#: Debian's interpreter, as the Makefile uses (the postgres user must be able to run it).
PYTHON = "/usr/bin/python3"
#: Installed in every venv by ``python -m venv``; not pulled by walg.
BASE_PACKAGES = {"pip", "setuptools"}


def source_copy(dest: Path) -> Path:
    """Copy the files a build of walg reads (symlinks kept, caches left out) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, dest / name, symlinks=True, ignore=skip)
        elif path.exists():
            shutil.copy2(path, dest / name)
    return dest


@dataclass(frozen=True)
class Install:
    """A venv with walg installed: where it is, what pip installed, how big it is."""

    venv: Path
    packages: tuple[str, ...]  # distributions pulled besides walg (pip, setuptools left out)
    added_bytes: int  # site-packages growth, walg included
    seconds: float

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (not following links)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(root, name))
            total += stat.st_size
    return total


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def install(venv: Path, source: Path, extra: str = "", timeout: float = 600) -> Install:
    """Make ``venv`` with Debian's python3 and ``pip install SOURCE[extra]`` into it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the venv's walg
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    before = tree_bytes(site_packages(venv))
    spec = f"{source}[{extra}]" if extra else str(source)
    start = time.monotonic()
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec],
        check=True, timeout=timeout, capture_output=True, text=True, env=env,
    )  # fmt: skip
    seconds = time.monotonic() - start
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    names = sorted(
        p["name"].lower() for p in json.loads(listed.stdout)
        if p["name"].lower() not in BASE_PACKAGES | {"walg"}
    )  # fmt: skip
    added = tree_bytes(site_packages(venv)) - before
    return Install(venv, tuple(names), added, seconds)
