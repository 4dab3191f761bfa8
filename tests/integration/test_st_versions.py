"""``wal-g st ls --all-versions``, ``st rm --version-id|--all-versions`` (versioned S3 bucket on
moto; GCS generations on fake-gcs-server; file storage, which keeps no versions), ``st copy
--from FILE --to FILE`` and ``st transfer`` (refused: walg has no failover storages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from servers.gcs import gcs_emulator
from servers.s3 import PREFIX, S3Maker, make_s3_storage, moto_server

from walg.cli import main
from walg.errors import VersionsUnsupported
from walg.storage.file import FileStorage
from walg.storage.gcs import GcsOptions, GcsStorage
from walg.storage.s3 import S3Storage

__all__ = ["gcs_emulator", "make_s3_storage", "moto_server"]  # fixtures

KEY = "wal_005/000000010000000000000001"


def s3_env(maker: S3Maker, storage: S3Storage) -> dict[str, str]:
    return {
        "WALG_S3_PREFIX": f"s3://{storage.options.bucket}/{PREFIX}",
        "AWS_ENDPOINT": maker.endpoint,
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }


@pytest.fixture
def versioned(make_s3_storage: S3Maker) -> tuple[S3Storage, dict[str, str]]:
    """A versioned bucket: KEY in two versions, ``gone`` deleted (a delete marker)."""
    storage = make_s3_storage()
    make_s3_storage.client.put_bucket_versioning(
        Bucket=storage.options.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    storage.put_object(KEY, b"first")
    storage.put_object(KEY, b"second!")
    storage.put_object("gone", b"x")
    storage.delete_objects(["gone"])
    return storage, s3_env(make_s3_storage, storage)


def lines(out: str) -> list[list[str]]:
    """Each line of ``st ls`` after the header, split on blanks, without the time."""
    return [line.split()[:2] + line.split()[6:] for line in out.splitlines()[1:]]


def test_s3_ls_all_versions(versioned: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Every version with its ID and LATEST, then delete markers (DELETE), as WAL-G prints."""
    storage, env = versioned
    ids = [v.version_id for v in storage.list_versions(KEY)]
    gone = sorted(storage.list_versions("gone"), key=lambda v: v.delete_marker, reverse=True)
    assert main(["st", "ls", "-r", "--all-versions"], environ=env) == 0
    assert lines(capsys.readouterr().out) == [
        ["obj", "1", "gone", gone[1].version_id],
        ["obj", "0", "gone", gone[0].version_id, "LATEST", "DELETE"],
        ["obj", "7", KEY, ids[0], "LATEST"],
        ["obj", "5", KEY, ids[1]],
    ]
    assert main(["st", "ls", "--all-versions"], environ=env) == 0
    assert [row[:3] for row in lines(capsys.readouterr().out)] == [
        ["dir", "0", "wal_005/"],
        ["obj", "1", "gone"],
        ["obj", "0", "gone"],
    ]


def test_s3_rm_version_id(versioned: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """--version-id deletes that version for good; the current one stays; an unknown ID
    and --version-id with --all-versions are one-line errors, exit 1."""
    storage, env = versioned
    old = storage.list_versions(KEY)[1].version_id
    assert main(["st", "rm", KEY, "--version-id", old], environ=env) == 0
    assert [v.version_id for v in storage.list_versions(KEY)] != [] and old not in [
        v.version_id for v in storage.list_versions(KEY)
    ]
    assert storage.read_bytes(KEY) == b"second!"
    assert main(["st", "rm", KEY, "--version-id", old], environ=env) == 1
    assert f"has no version '{old}'" in capsys.readouterr().err
    assert main(["st", "rm", "--all-versions", KEY, "--version-id", "x"], environ=env) == 1
    assert "cannot be used together with --all-versions" in capsys.readouterr().err


def test_s3_rm_all_versions(versioned: Any) -> None:
    """--all-versions removes every version and delete marker under the path for good."""
    storage, env = versioned
    assert main(["st", "rm", "--all-versions", "gone"], environ=env) == 0
    assert storage.list_versions("gone") == []
    assert main(["st", "rm", "wal_005/"], environ=env) == 0  # plain rm: a delete marker
    assert len(storage.list_versions("wal_005/")) == 3
    assert main(["st", "rm", "wal_005/", "--all-versions"], environ=env) == 0
    assert storage.list_versions() == []


def test_file_storage_keeps_no_versions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """File storage: --all-versions lists (and rm removes) the current objects with one
    warning; --version-id is a one-line error naming why, exit 1."""
    storage = FileStorage(str(tmp_path))
    storage.put_object(KEY, b"x")
    env = {"WALG_FILE_PREFIX": str(tmp_path)}
    assert main(["st", "ls", "-r", "--all-versions"], environ=env) == 0
    out, err = capsys.readouterr()
    assert [row[:3] for row in lines(out)] == [["obj", "1", KEY]]
    assert "keeps no object versions: --all-versions lists the current objects" in err
    assert main(["st", "rm", KEY, "--version-id", "1"], environ=env) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and f"file://{tmp_path}/ keeps no object versions" in err
    assert main(["st", "rm", "--all-versions", KEY], environ=env) == 0
    assert not storage.exists(KEY)


def test_gcs_generations(gcs_emulator: str) -> None:
    """GCS: every generation is listed (the live one LATEST); deleting one generation is
    refused with the reason (fake-gcs-server ignores the generation on delete)."""
    bucket = "walg-versions"
    answer = requests.post(
        f"{gcs_emulator}/storage/v1/b",
        params={"project": "walg-tests"},
        json={"name": bucket, "versioning": {"enabled": True}},
        timeout=10,
    )
    answer.raise_for_status()
    storage = GcsStorage(GcsOptions(bucket=bucket, emulator_host=gcs_emulator), "walg")
    storage.put_object(KEY, b"first")
    storage.put_object(KEY, b"second!")
    versions = storage.list_versions("wal_005/")
    assert [(v.name, v.size, v.latest) for v in versions] == [(KEY, 7, True), (KEY, 5, False)]
    with pytest.raises(VersionsUnsupported, match="ignores the generation"):
        storage.delete_version(KEY, versions[1].version_id)


def test_transfer_is_refused_naming_failover_storages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """WAL-G's scripts' st transfer lines parse and fail with one line, exit 1 (not 2)."""
    env = {"WALG_FILE_PREFIX": str(tmp_path)}
    for words in (
        ["backups", "--source", "default", "--target", "good_failover", "--preserve"],
        ["pg-wals", "--source=failover", "--target=default", "--overwrite", "--fail-fast"],
        ["files", "a/", "--source=failover", "--target=default", "-c", "5"],
    ):
        assert main(["st", "transfer", *words], environ=env) == 1
        assert "WALG_FAILOVER_STORAGES is not supported" in capsys.readouterr().err


def test_copy_between_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """st copy --from A --to B copies every object (or those under --prefix) to the same
    key; -e encrypts with B's key, -d decrypts with the command's own key; the
    environment's storage is not used for either side."""
    key = "a" * 32
    one, two, three = (tmp_path / n for n in ("one", "two", "three"))
    for path, extra in ((one, {}), (two, {"WALG_LIBSODIUM_KEY": key}), (three, {})):
        path.mkdir()
        (tmp_path / f"{path.name}.json").write_text(
            json.dumps({"WALG_FILE_PREFIX": str(path), **extra})
        )
    FileStorage(str(one)).put_object(KEY, b"plain bytes")
    FileStorage(str(one)).put_object("other/x", b"x")
    conf = {n: str(tmp_path / f"{n}.json") for n in ("one", "two", "three")}
    env = {"WALG_FILE_PREFIX": str(tmp_path / "nowhere")}
    args = ["st", "copy", "--from", conf["one"], "--to", conf["two"], "-e", "-p", "wal_"]
    assert main(["--config", conf["one"], *args], environ=env) == 0
    assert "Successfully copied 1 objects" in capsys.readouterr().err
    target = FileStorage(str(two))
    assert [o.name for o in target.list_objects()] == [KEY]
    assert target.read_bytes(KEY) != b"plain bytes"
    assert main(["st", "cat", "--decrypt", KEY, "--config", conf["two"]], environ={}) == 0
    assert capsys.readouterr().out == "plain bytes"
    args = ["st", "copy", "--from", conf["two"], "--to", conf["three"], "-d"]
    assert main(["--config", conf["two"], *args], environ={}) == 0
    assert FileStorage(str(three)).read_bytes(KEY) == b"plain bytes"
