"""backup-verify on real PostgreSQL: exit 0 for a whole full backup and a whole delta chain;
exit 65 naming every missing or bad object and file otherwise; page checksums caught on a
cluster with data checksums; nothing written; the JSON report's shape."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lz4.frame
import pytest
from conftest_helpers import WALG, scrubbed_env  # type: ignore[import-not-found]
from servers.postgres import PgCluster, postgres_unavailable
from test_backup_features import pgp_key  # type: ignore[import-not-found]  # noqa: F401
from test_verify import corrupt_first_page  # type: ignore[import-not-found]

DAMAGED = 65
PART_SIZE = "1048576"


def _push(cluster: PgCluster, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([WALG, "backup-push", str(cluster.data_dir), *args],
                          env={**scrubbed_env(), **cluster.env, **env}, capture_output=True,
                          text=True, timeout=600, check=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Path, str, str]]:
    """A full backup and a delta on it of a pgbench cluster with data checksums, in parts
    of 1 MiB: (the storage, the full's name, the delta's name)."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster.create(data_checksums=True)
    try:
        store = cluster.make_dir("storage")
        cluster.archive_command = "/bin/true"
        cluster.configure()
        cluster.start()
        cluster.pgbench_init(scale=1)
        env = {"WALG_FILE_PREFIX": str(store), "WALG_TAR_SIZE_THRESHOLD": PART_SIZE,
               "WALG_ARCHIVE_CHECK": "false", "WALG_DELTA_MAX_STEPS": "1"}
        full = _push(cluster, env, "--full")
        cluster.psql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 50 = 0")
        cluster.psql("CHECKPOINT")
        delta = _push(cluster, env)
        assert "_D_" in delta, delta
        yield store, full, delta
    finally:
        cluster.cleanup()


@pytest.fixture
def store(chain: tuple[Path, str, str], tmp_path: Path) -> Path:
    """A copy of the chain's storage, to damage."""
    copy = tmp_path / "store"
    shutil.copytree(chain[0], copy)
    return copy


def verify(walg: Any, store: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = walg(
        "backup-verify", *args, name, env={"WALG_FILE_PREFIX": str(store)}, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]


def parts(store: Path, name: str) -> list[Path]:
    return sorted((store / "basebackups_005" / name / "tar_partitions").glob("part_*"))


def metadata_path(store: Path, name: str) -> Path:
    return store / "basebackups_005" / name / "files_metadata.json"


def test_good_full_backup(walg: Any, store: Path, chain: tuple[Path, str, str]) -> None:
    """A whole full backup exits 0 with a one-line summary; page checksums were checked."""
    full = chain[1]
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    done = verify(walg, store, full)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backup {full}: OK;"), done.stdout
    assert not errors(done)
    report = json.loads(verify(walg, store, full, "--json").stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["pages_checked"] > 1000  # pgbench_accounts alone has ~1640 pages
    assert report["objects_checked"] == len(list((store / "basebackups_005" / full /
                                                  "tar_partitions").iterdir()))
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # nothing written


def test_good_delta_chain(walg: Any, store: Path, chain: tuple[Path, str, str]) -> None:
    """LATEST (the delta) verifies with its base: both backups' objects are read."""
    _, full, delta = chain
    done = verify(walg, store, "LATEST", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backup_name"] == delta
    assert report["chain"] == [full, delta]
    assert report["objects_checked"] == len(parts(store, full)) + len(parts(store, delta)) + 4


def test_json_shape(walg: Any, store: Path, chain: tuple[Path, str, str]) -> None:
    """--json: one document with the fields exporters read, also when verification fails."""
    victim = parts(store, chain[1])[1]
    victim.unlink()
    done = verify(walg, store, chain[1], "--json")
    assert done.returncode == DAMAGED
    report = json.loads(done.stdout)
    assert set(report) >= {"backup_name", "ok", "chain", "objects_checked", "files_checked",
                           "bytes_read", "bytes_decoded", "pages_checked", "problems",
                           "not_checked", "duration_seconds"}
    assert report["ok"] is False
    assert report["problems"] == [{
        "kind": "missing_object", "object": victim.name, "file": None, "backup": chain[1],
        "message": f"backup {chain[1]}: {victim.name} is missing from tar_partitions/",
    }]
    assert report["files_checked"] > 100 and report["bytes_read"] > 0
    assert isinstance(report["duration_seconds"], float)


def test_corrupted_parts_are_all_named(walg: Any, store: Path,
                                       chain: tuple[Path, str, str]) -> None:
    """Bytes flipped in two stored parts: exit 65, both named, the other parts still read."""
    full = chain[1]
    victims = parts(store, full)[1:3]
    for victim in victims:
        data = bytearray(victim.read_bytes())
        for offset in range(len(data) // 2, len(data) // 2 + 64):
            data[offset] ^= 0x5A
        victim.write_bytes(bytes(data))
    done = verify(walg, store, full)
    assert done.returncode == DAMAGED, done.stderr
    lines = errors(done)
    for victim in victims:
        assert any(victim.name in line for line in lines[:-1]), lines
    assert "failed verification" in lines[-1]
    report = json.loads(verify(walg, store, full, "--json").stdout)
    assert report["objects_checked"] == len(parts(store, full)) + 2  # pg_control, label
    done = walg("backup-verify", full, check=False,
                env={"WALG_FILE_PREFIX": str(store), "WALG_LOG_FORMAT": "json"})  # fmt: skip
    records = [json.loads(line) for line in done.stderr.splitlines()]  # no bare lines
    named = [r["event"] for r in records if r["level"] == "error"]
    assert all(any(v.name in event for event in named) for v in victims), done.stderr


def test_missing_parts_are_all_named(walg: Any, store: Path,
                                     chain: tuple[Path, str, str]) -> None:
    """Two parts of the delta's base deleted: verifying the delta names both."""
    _, full, delta = chain
    victims = parts(store, full)[2:4]
    for victim in victims:
        victim.unlink()
    done = verify(walg, store, delta)
    assert done.returncode == DAMAGED, done.stderr
    text = "\n".join(errors(done))
    for victim in victims:
        assert f"{full}: backup {full}: {victim.name} is missing" in text


def test_crc_mismatches_are_all_named(walg: Any, store: Path,
                                      chain: tuple[Path, str, str]) -> None:
    """Files whose recorded CRC-32C differs from the stored bytes are each named."""
    full = chain[1]
    path = metadata_path(store, full)
    doc = json.loads(path.read_text())
    doc["Files"]["/PG_VERSION"]["WalgCrc32c"] = "00000000"
    doc["Files"]["/global/pg_control"]["WalgCrc32c"] = "00000000"
    path.write_text(json.dumps(doc))
    done = verify(walg, store, full)
    assert done.returncode == DAMAGED
    lines = errors(done)
    assert any("PG_VERSION in part_" in line and "checksum" in line for line in lines), lines
    assert any("global/pg_control in pg_control.tar" in line for line in lines), lines


def test_file_missing_from_parts_is_named(walg: Any, store: Path,
                                          chain: tuple[Path, str, str]) -> None:
    """A file the metadata lists that no part holds is named."""
    full = chain[1]
    path = metadata_path(store, full)
    doc = json.loads(path.read_text())
    doc["Files"]["/base/1/99999"] = doc["Files"]["/PG_VERSION"]
    path.write_text(json.dumps(doc))
    done = verify(walg, store, full)
    assert done.returncode == DAMAGED
    assert any("base/1/99999 is listed in its files metadata but in no part" in line
               for line in errors(done)), done.stderr


def _rewrite_member(part: Path, member: str, change: Any) -> None:
    """Decompress the lz4 tar ``part``, apply ``change`` to ``member``'s bytes, store it."""
    raw = bytearray(lz4.frame.decompress(part.read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        info = next(i for i in tar.getmembers() if i.name.lstrip("/") == member)
    start = info.offset_data
    raw[start : start + info.size] = change(bytes(raw[start : start + info.size]))
    part.write_bytes(lz4.frame.compress(bytes(raw)))


def test_page_corrupted_in_a_backup_without_crcs(walg: Any, store: Path,
                                                 chain: tuple[Path, str, str]) -> None:
    """A backup without per-file CRC-32C (as WAL-G writes them) whose stored copy of a
    table has a damaged page: the page checksum names the file and block, and the report
    says the CRCs could not be checked."""
    full = chain[1]
    path = metadata_path(store, full)
    doc = json.loads(path.read_text())
    for described in doc["Files"].values():
        described.pop("WalgCrc32c", None)
    path.write_text(json.dumps(doc))
    member, part = next((m.lstrip("/"), p) for p, members in sorted(doc["TarFileSets"].items())
                        for m in members if m.startswith("/base/")
                        and doc["Files"][m].get("WalgSize", 0) >= 3 * 8192)

    def damage(data: bytes) -> bytes:
        page = bytearray(data)
        page[8192 + 5000] ^= 0xFF  # inside block 1, past its header
        return bytes(page)

    _rewrite_member(store / "basebackups_005" / full / "tar_partitions" / part, member, damage)
    done = verify(walg, store, full)
    assert done.returncode == DAMAGED, done.stderr
    lines = errors(done)
    assert any(f"{member} in {part}: 1 page(s) fail their checksum, block(s) 1" in line
               for line in lines), lines
    assert "no recorded CRC-32C" in done.stdout


def test_page_corrupt_in_the_cluster_is_caught(pg_cluster_factory: Any, walg: Any) -> None:
    """A page already corrupt on disk when backup-push (without --verify) ran is stored with
    a matching CRC; backup-verify still fails on its checksum, naming file and block."""
    cluster = pg_cluster_factory(data_checksums=True)
    cluster.psql(
        "CREATE TABLE bad AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g"
    )
    damaged = corrupt_first_page(cluster, "bad")
    env = {"WALG_FILE_PREFIX": str(cluster.make_dir("storage"))}
    name = walg("backup-push", str(cluster.data_dir),
                env={**cluster.env, **env}).stdout.strip().splitlines()[-1]
    done = walg("backup-verify", name, env=env, check=False)
    assert done.returncode == DAMAGED, done.stderr
    assert any(damaged in line and "fail their checksum, block(s) 0" in line
               for line in errors(done)), done.stderr


def test_backup_push_verify_records_are_mentioned(pg_cluster_factory: Any, walg: Any) -> None:
    """Pages backup-push --verify recorded as corrupt are reported as such."""
    cluster = pg_cluster_factory(data_checksums=True)
    cluster.psql("CREATE TABLE bad AS SELECT g AS id FROM generate_series(1, 5000) g")
    corrupt_first_page(cluster, "bad")
    env = {"WALG_FILE_PREFIX": str(cluster.make_dir("storage"))}
    walg("backup-push", str(cluster.data_dir), "--verify", env={**cluster.env, **env})
    done = walg("backup-verify", "LATEST", env=env, check=False)
    assert done.returncode == DAMAGED
    assert "backup-push --verify found the cluster's copy corrupt too" in done.stderr


def test_replay_after_verification(pg_cluster_factory: Any) -> None:
    """--replay, as the postgres user: a good backup is verified, then replayed to
    consistency (exit 0, both lines printed); with a part deleted, the verification fails
    (exit 65) and no replay is attempted. As root it fails at once (exit 2)."""
    from test_backup_replay import _as_postgres, archiving_cluster  # type: ignore[import-not-found]

    cluster, env = archiving_cluster(pg_cluster_factory)
    cluster.pgbench_init(scale=1)
    subprocess.run([WALG, "backup-push", str(cluster.data_dir)], env=env, check=True,
                   capture_output=True, timeout=600)
    command = _as_postgres([WALG, "backup-verify", "--replay", "LATEST"])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    summary, replayed = lines[0], lines[-1]
    assert ": OK;" in summary
    assert replayed.startswith("replay: backup base_") and "consistency" in replayed
    as_root = subprocess.run([WALG, "backup-verify", "--replay", "LATEST"], env=env,
                             capture_output=True, text=True, timeout=600)
    if os.geteuid() == 0:
        assert as_root.returncode == 2 and "root" in as_root.stderr, as_root.stderr
        assert "OK" not in as_root.stdout  # refused before verifying
    victim = parts(Path(env["WALG_FILE_PREFIX"]), summary.split()[1].rstrip(":"))[0]
    victim.unlink()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == DAMAGED, done.stderr
    assert "replay not attempted" in done.stderr and "replay:" not in done.stdout


def test_encrypted_backup(
    pg_cluster_factory: Any, walg: Any, pgp_key: tuple[str, str]  # noqa: F811
) -> None:
    """An encrypted backup verifies with its key; a damaged encrypted part is named; without
    the key the check cannot be made (exit 1, not 65: nothing is known about the backup)."""
    cluster = pg_cluster_factory()
    cluster.pgbench_init(scale=1)
    storage = cluster.make_dir("storage")
    env = {"WALG_FILE_PREFIX": str(storage), "WALG_PGP_KEY": pgp_key[0],
           "WALG_TAR_SIZE_THRESHOLD": PART_SIZE}
    name = walg("backup-push", str(cluster.data_dir),
                env={**cluster.env, **env}).stdout.strip().splitlines()[-1]
    assert walg("backup-verify", name, env=env, check=False).returncode == 0
    victim = parts(storage, name)[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    done = walg("backup-verify", name, env=env, check=False)
    assert done.returncode == DAMAGED, done.stderr
    assert any(victim.name in line for line in errors(done)[:-1]), done.stderr
    no_key = {k: v for k, v in env.items() if k != "WALG_PGP_KEY"}
    assert walg("backup-verify", name, env=no_key, check=False).returncode == 1
