"""What each pip install of walg pulls: walg alone, walg[s3], walg[gcs], walg[all].

Installs this checkout (as a wheel, the way `pip install walg[...]` would) into a throwaway
venv per variant made with Debian's /usr/bin/python3, then prints the distributions pulled
besides walg (pip and setuptools left out), the growth of site-packages, the install time,
and checks each install works: `wal-g --help` names an installed guide that exists, `wal-g st
check write` passes on file storage, and S3/GCS without their extra exit 2 naming it.

    .venv/bin/python bench/install_size.py [--variants core,s3,gcs,all] [--keep]

Venvs go under a temporary directory (removed unless --keep). Install times depend on pip's
cache and the machine's load; package counts and sizes do not.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers.install import Install, install, source_copy

STORAGES = {"s3": ("WALG_S3_PREFIX", "s3://bucket/walg"), "gcs": ("WALG_GS_PREFIX", "gs://bucket/walg")}


def check(result: Install, extra: str, work: Path) -> list[str]:
    """What a user would try first; returns the failures (empty when all is well)."""
    failures: list[str] = []
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WALG_", "WALE_", "AWS_", "GOOGLE_")) and k != "PYTHONPATH"}
    helped = subprocess.run([str(result.bin / "wal-g"), "--help"], env=env,
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"installed at\s+(\S+)", helped.stdout)
    if not found or not Path(found.group(1)).is_file():
        failures.append(f"--help names no installed guide: {helped.stdout[-200:]!r}")
    folder = work / f"storage-{extra or 'core'}"
    folder.mkdir()
    wrote = subprocess.run([str(result.bin / "wal-g"), "st", "check", "write"],
                           env={**env, "WALG_FILE_PREFIX": str(folder)},
                           capture_output=True, text=True, timeout=60)
    if wrote.returncode != 0:
        failures.append(f"st check write on file storage: exit {wrote.returncode}")
    for name, (setting, url) in STORAGES.items():
        if extra in (name, "all"):
            continue
        listed = subprocess.run([str(result.bin / "wal-g"), "backup-list"],
                                env={**env, setting: url}, capture_output=True, text=True,
                                timeout=60)
        if listed.returncode != 2 or f"walg[{name}]" not in listed.stderr:
            failures.append(f"{name} without its extra: exit {listed.returncode}, "
                            f"{listed.stderr.strip()!r}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="core,s3,gcs,all")
    parser.add_argument("--keep", action="store_true", help="keep the venvs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="walg-install-"))
    source = source_copy(work / "src")
    rows = []
    for variant in args.variants.split(","):
        extra = "" if variant == "core" else variant
        result = install(work / f"venv-{variant}", source, extra)
        failures = check(result, extra, work)
        rows.append((variant, result, failures))
        print(f"{'walg' if not extra else f'walg[{extra}]':<11} {len(result.packages):>3} "
              f"packages  {result.added_bytes / 1e6:6.1f} MB  {result.seconds:5.1f} s  "
              f"{'ok' if not failures else 'FAILED: ' + '; '.join(failures)}", flush=True)
    core = next((r for v, r, _ in rows if v == "core"), None)
    for variant, result, _ in rows:
        if core is not None and variant != "core":
            more = sorted(set(result.packages) - set(core.packages))
            print(f"  [{variant}] adds {len(more)}: {' '.join(more)}")
    if core is not None:
        print(f"  core: {' '.join(core.packages)}")
    if args.keep:
        print(f"venvs kept in {work}")
    else:
        subprocess.run(["rm", "-rf", str(work)], check=True)
    sys.exit(1 if any(failures for _, _, failures in rows) else 0)


if __name__ == "__main__":
    main()
