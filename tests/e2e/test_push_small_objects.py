"""backup-push stores its small objects (pg_control, backup_label) from the parent process
(issue 15): a storage error there fails the push like one in a worker, with no sentinel
and nothing of the failed backup left, and a rerun succeeds."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from servers.faults import FaultProxy
from servers.postgres import PgCluster
from servers.s3 import make_s3_storage, moto_server, raw_client  # noqa: F401


def s3_env(bucket: str, endpoint: str) -> dict[str, str]:
    return {
        "WALG_S3_PREFIX": f"s3://{bucket}/db",
        "AWS_ENDPOINT": endpoint,
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "WALG_ARCHIVE_CHECK": "false",
        "WALG_S3_MAX_RETRIES": "0",
    }


def keys(endpoint: str, bucket: str) -> list[str]:
    listed = raw_client(endpoint).list_objects_v2(Bucket=bucket, Prefix="db/")
    return [o["Key"] for o in listed.get("Contents", [])]


@pytest.mark.parametrize("obj", ["pg_control.tar", "backup_label.tar"])
def test_failed_small_object_fails_the_push_without_sentinel(
    pg_cluster: PgCluster,
    walg: Any,
    make_s3_storage: Any,  # noqa: F811
    obj: str,
) -> None:
    bucket = make_s3_storage.new_bucket()
    endpoint = make_s3_storage.endpoint
    env = {**pg_cluster.env, **s3_env(bucket, endpoint)}
    upstream = urlsplit(endpoint)
    with FaultProxy(str(upstream.hostname), int(upstream.port or 80)) as proxy:
        proxy.fail_next(100, 403, match=rf"PUT \S*/{obj}\.")
        done = walg(
            "backup-push",
            str(pg_cluster.data_dir),
            check=False,
            env={**env, "AWS_ENDPOINT": proxy.url},
        )
        assert proxy.faults >= 1
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and obj in errors[0], done.stderr
    assert not [k for k in keys(endpoint, bucket) if k.endswith("_backup_stop_sentinel.json")]
    assert not [k for k in keys(endpoint, bucket) if "/basebackups_005/" in k]
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    stored = keys(endpoint, bucket)
    assert len([k for k in stored if k.endswith("_backup_stop_sentinel.json")]) == 1
    assert any(f"/tar_partitions/{obj}." in k for k in stored)
