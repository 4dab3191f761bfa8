"""Find the PostgreSQL server programs of one major version.

``pg_config --bindir`` when that pg_config is of the version asked for, else the Debian and
Ubuntu layout ``/usr/lib/postgresql/MAJOR/bin``. A missing version is one clear error
naming where walg looked and how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence

from walg.errors import ReplayUnavailable

__all__ = ["find_bindir", "major_version", "parse_pg_config_version"]

_DEBIAN_ROOT = "/usr/lib/postgresql"
_VERSION = re.compile(r"PostgreSQL (\d+)(?:\.(\d+))?")


def major_version(pg_version: int) -> str:
    """The major version of a server_version_num: 150018 -> "15", 90624 -> "9.6"."""
    if pg_version >= 100000:
        return str(pg_version // 10000)
    return f"{pg_version // 10000}.{pg_version // 100 % 100}"


def parse_pg_config_version(text: str) -> str | None:
    """The major version in ``pg_config --version`` output ("PostgreSQL 15.18 (Debian ...)"
    -> "15", "PostgreSQL 9.6.24" -> "9.6", "PostgreSQL 17devel" -> "17"), or None."""
    match = _VERSION.search(text)
    if match is None:
        return None
    major = int(match.group(1))
    if major >= 10 or match.group(2) is None:
        return str(major)
    return f"{major}.{match.group(2)}"


def find_bindir(major: str, *, debian_root: str = _DEBIAN_ROOT) -> str:
    """The directory holding ``postgres`` and ``pg_controldata`` of PostgreSQL ``major``."""
    tried: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = _from_pg_config(pg_config, major, tried)
        if found is not None:
            return found
    else:
        tried.append("no pg_config in PATH")
    candidate = os.path.join(debian_root, major, "bin")
    if _has_server(candidate):
        return candidate
    tried.append(f"no {os.path.join(candidate, 'postgres')}")
    raise ReplayUnavailable(
        f"PostgreSQL {major} server programs not found ({'; '.join(tried)})",
        hint=f"install the PostgreSQL {major} server (e.g. apt-get install postgresql-{major}), "
        f"or put its pg_config first in PATH",
    )


def _from_pg_config(pg_config: str, major: str, tried: list[str]) -> str | None:
    answer = _run([pg_config, "--version", "--bindir"])
    lines = answer.splitlines() if answer is not None else []
    if len(lines) != 2:
        tried.append(f"{pg_config} did not answer")
        return None
    version, bindir = parse_pg_config_version(lines[0]), lines[1].strip()
    if version != major:
        tried.append(f"{pg_config} is PostgreSQL {version or '?'}")
        return None
    if not _has_server(bindir):
        tried.append(f"no {os.path.join(bindir, 'postgres')}")
        return None
    return bindir


def _has_server(bindir: str) -> bool:
    return all(
        os.access(os.path.join(bindir, program), os.X_OK)
        for program in ("postgres", "pg_controldata")
    )


def _run(command: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
