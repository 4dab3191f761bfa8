"""zstd stays out (issue 17 item 6): objects WAL-G stored with zstd (a WAL segment
``wal_005/X.zst``, backup parts ``part_001.tar.zst``) are refused by wal-fetch,
backup-fetch, backup-verify and st get/cat with one ERROR line that names the object, says
zstd is not supported and why (WAL-G wrote it; walg has no zstd decoder), and a hint (read
it with WAL-G, or re-archive). The objects here are fake: walg must not try to decode them,
so their bytes never matter. Nothing is written to the destination."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from servers.logtext import untimed
from servers.synthetic_backups import at, put_backup

from walg.storage.file import FileStorage

SEGMENT = "000000010000000000000003"
# zstd's frame magic, then bytes no decoder would accept: walg must stop at the name.
FAKE_ZSTD = b"\x28\xb5\x2f\xfd" + b"not really zstd" * 10


def wal_g(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "wal-g"), *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def zstd_archive(tmp_path: Path, clean_env: dict[str, str]) -> tuple[dict[str, str], str]:
    """File storage holding one zstd WAL segment and one backup whose parts are .tar.zst."""
    storage = tmp_path / "storage"
    storage.mkdir()
    store = FileStorage(str(storage))
    name = put_backup(store, 3, at(0))
    parts = storage / "basebackups_005" / name / "tar_partitions"
    for part in list(parts.iterdir()):
        part.unlink()
        (parts / part.name.replace(".lz4", ".zst")).write_bytes(FAKE_ZSTD)
    (storage / "wal_005").mkdir(exist_ok=True)
    (storage / "wal_005" / f"{SEGMENT}.zst").write_bytes(FAKE_ZSTD)
    env = {**clean_env, "WALG_FILE_PREFIX": str(storage), "HOME": str(tmp_path)}
    return env, name


def assert_refused(done: subprocess.CompletedProcess[str], code: int, names: str) -> None:
    """One ERROR line naming ``names``, zstd, WAL-G and why; a hint; no traceback."""
    assert done.returncode == code, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, done.stderr
    assert names in errors[0]
    assert "compressed with zstd (.zst): WAL-G wrote it" in errors[0]
    assert "no zstd decoder" in errors[0]
    assert "HINT: read it with WAL-G itself" in untimed(done.stderr) and "re-archive" in done.stderr
    assert "Traceback" not in done.stderr


def test_wal_fetch_of_a_zstd_segment_aborts_recovery(
    zstd_archive: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    """wal-fetch exits 200 (recovery stops; never 74, which would end it early)."""
    env, _ = zstd_archive
    for flags in ((), ("--no-prefetch",)):
        dest = tmp_path / "RECOVERYXLOG"
        done = wal_g(env, "wal-fetch", *flags, SEGMENT, str(dest))
        assert_refused(done, 200, f"wal_005/{SEGMENT}.zst")
        assert not dest.exists()


@pytest.mark.parametrize("command", ["backup-fetch", "backup-verify"])
def test_backup_with_zstd_parts_is_refused_before_writing(
    zstd_archive: tuple[dict[str, str], str], tmp_path: Path, command: str
) -> None:
    """backup-fetch and backup-verify name the backup; backup-fetch writes nothing."""
    env, name = zstd_archive
    target = tmp_path / "restore"
    args = [str(target), "LATEST"] if command == "backup-fetch" else [name]
    done = wal_g(env, command, *args)
    assert_refused(done, 2, f"backup {name}")
    assert not target.exists() or not any(target.iterdir())


@pytest.mark.parametrize("kind", ["wal", "part"])
def test_st_get_and_cat_decompress_refuse_zstd(
    zstd_archive: tuple[dict[str, str], str], tmp_path: Path, kind: str
) -> None:
    """st get (which decompresses by default) and st cat --decompress name the object;
    st get --no-decompress and plain st cat still copy its bytes as they are."""
    env, name = zstd_archive
    key = (f"wal_005/{SEGMENT}.zst" if kind == "wal"
           else f"basebackups_005/{name}/tar_partitions/part_001.tar.zst")
    dest = tmp_path / "got"
    assert_refused(wal_g(env, "st", "get", key, str(dest)), 2, key)
    assert not dest.exists()
    assert_refused(wal_g(env, "st", "cat", key, "--decompress"), 2, key)
    raw = wal_g(env, "st", "get", "--no-decompress", key, str(dest))
    assert raw.returncode == 0, raw.stderr
    assert dest.read_bytes() == FAKE_ZSTD
