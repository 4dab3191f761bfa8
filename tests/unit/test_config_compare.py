"""The storage identity (where data goes, endpoint included) and the comparison of the
settings that change where or how WAL is stored or read (what ``wal-g daemon`` refuses)."""

from __future__ import annotations

import pytest

from walg import config
from walg.config.compare import differences
from walg.config.registry import VARIABLES
from walg.wal.daemon_client import is_sent

S3 = {"WALG_S3_PREFIX": "s3://bucket/walg"}
GS = {"WALG_GS_PREFIX": "gs://bucket/walg"}


def identity(**env: str) -> str:
    return config.load(env).storage_identity()


def test_same_settings_same_identity() -> None:
    """Two loads of one configuration have one identity; credentials and tuning do not count."""
    env = {**S3, "AWS_ENDPOINT": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"}
    assert identity(**env) == identity(**env, AWS_ACCESS_KEY_ID="a", WALG_S3_MAX_RETRIES="3")


def test_s3_endpoint_changes_the_identity() -> None:
    """The same bucket and path at another AWS_ENDPOINT (or at AWS) is another storage."""
    local = identity(**S3, AWS_ENDPOINT="http://127.0.0.1:9000")
    assert local != identity(**S3, AWS_ENDPOINT="https://s3.example.net")
    assert local != identity(**S3)
    assert identity(**S3) != "s3://bucket/walg"  # markers written before never match


def test_endpoint_spellings_of_one_service_are_one_identity() -> None:
    """A missing scheme (https for S3) or a trailing slash does not make another identity."""
    assert identity(**S3, AWS_ENDPOINT="s3.example.net") == identity(
        **S3, AWS_ENDPOINT="https://s3.example.net/"
    )


def test_s3_region_and_profile_do_not_change_the_identity() -> None:
    """AWS_REGION and AWS_PROFILE leave the identity as it is: a bucket name is global and
    the endpoint is already in it, and a profile stands for credentials, which are not
    compared (a daemon started with AWS_REGION must serve an archive_command without it)."""
    assert identity(**S3) == identity(**S3, AWS_REGION="eu-west-1", AWS_PROFILE="other")
    local = {**S3, "AWS_ENDPOINT": "http://127.0.0.1:9000"}
    assert identity(**local) == identity(**local, AWS_REGION="us-east-1", AWS_DEFAULT_REGION="x")
    daemon = config.load({**S3, "AWS_REGION": "eu-west-1", "AWS_PROFILE": "walg"})
    assert differences(daemon, config.load(S3), writes=True) == []


def test_gcs_emulator_changes_the_identity() -> None:
    """A GCS bucket at STORAGE_EMULATOR_HOST is not the one at Google."""
    emulated = identity(**GS, STORAGE_EMULATOR_HOST="127.0.0.1:9023")
    assert emulated != identity(**GS)
    assert emulated == identity(**GS, STORAGE_EMULATOR_HOST="http://127.0.0.1:9023")


def test_file_identity_is_the_directory() -> None:
    """File storage is identified by its absolute directory."""
    assert identity(WALG_FILE_PREFIX="/var/backups/walg/") == "/var/backups/walg"


def load(**env: str) -> config.Settings:
    return config.load({"WALG_FILE_PREFIX": "/backups", **env})


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"WALG_COMPRESSION_METHOD": "lzma"}, "WALG_COMPRESSION_METHOD"),
        ({"WALG_PREVENT_WAL_OVERWRITE": "true"}, "WALG_PREVENT_WAL_OVERWRITE"),
        ({"WALG_PGP_KEY": "key"}, "WALG_PGP_KEY"),
        ({"WALG_PGP_KEY_PATH": "/key.asc"}, "WALG_PGP_KEY_PATH"),
        ({"WALG_PGP_KEY_PASSPHRASE": "pass"}, "WALG_PGP_KEY_PASSPHRASE"),
        ({"WALG_GPG_KEY_ID": "ABCD"}, "WALG_GPG_KEY_ID"),
    ],
)
def test_a_write_setting_that_differs_is_named(env: dict[str, str], name: str) -> None:
    """Each setting that changes how WAL is stored is named when it differs for a push."""
    assert differences(load(), load(**env), writes=True) == [name]
    assert differences(load(**env), load(), writes=True) == [name]


def test_reads_compare_storage_and_keys_only() -> None:
    """For a fetch, compression and overwrite prevention do not matter; the key does."""
    other = load(WALG_COMPRESSION_METHOD="brotli", WALG_PREVENT_WAL_OVERWRITE="true")
    assert differences(load(), other, writes=False) == []
    assert differences(load(), load(WALG_PGP_KEY="k"), writes=False) == ["WALG_PGP_KEY"]


def test_secret_values_are_compared_but_not_shown() -> None:
    """Two different keys differ; only the variable's name is reported."""
    found = differences(load(WALG_PGP_KEY="one"), load(WALG_PGP_KEY="two"), writes=True)
    assert found == ["WALG_PGP_KEY"]


def test_s3_storage_class_and_encryption_count_on_s3_only() -> None:
    """WALG_S3_STORAGE_CLASS and WALG_S3_SSE* count for S3 storage, not for a file storage."""
    sse = {"WALG_S3_SSE": "aws:kms", "WALG_S3_SSE_KMS_ID": "k", "WALG_S3_STORAGE_CLASS": "GLACIER"}
    on_s3 = differences(config.load(S3), config.load({**S3, **sse}), writes=True)
    assert on_s3 == ["WALG_S3_STORAGE_CLASS", "WALG_S3_SSE", "WALG_S3_SSE_KMS_ID"]
    assert differences(load(), load(**sse), writes=True) == []


def test_another_storage_is_reported_alone() -> None:
    """Another storage is one difference, whatever else differs."""
    other = config.load({"WALG_FILE_PREFIX": "/elsewhere", "WALG_COMPRESSION_METHOD": "lzma"})
    assert differences(load(), other, writes=True) == ["storage"]


def test_unchanged_tuning_is_no_difference() -> None:
    """Concurrency, rate limits, logging and credentials change neither where nor how."""
    tuned = load(
        WALG_UPLOAD_CONCURRENCY="1",
        WALG_NETWORK_RATE_LIMIT="1M",
        WALG_LOG_LEVEL="DEVEL",
        AWS_SECRET_ACCESS_KEY="x",
    )
    assert differences(load(), tuned, writes=True) == []


def test_the_daemon_client_sends_every_setting_it_could_differ_in() -> None:
    """Every variable (and fallback) of the storage, S3, GCS, compression, crypto and WAL
    settings is sent to the daemon, except the AWS credentials."""
    groups = {"storage", "s3", "gcs", "compression", "crypto", "wal"}
    names = {name for var in VARIABLES if var.group in groups for name in var.names}
    credentials = {
        "AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
        "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    }  # fmt: skip
    assert sorted(n for n in names - credentials if not is_sent(n)) == []
    assert sorted(n for n in credentials if is_sent(n)) == []
    assert is_sent("HOME") and is_sent("WALG_CONFIG_PATH") and not is_sent("PGPASSWORD")


def test_botocore_endpoint_variables_are_part_of_the_identity() -> None:
    """AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (which botocore itself reads) are fallbacks of
    AWS_ENDPOINT, so the storage identity sees the endpoint the uploads really go to."""
    base = {"WALG_S3_PREFIX": "s3://bucket/path"}
    aws = config.load(base).storage_identity()
    via_url = config.load({**base, "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    via_s3 = config.load({**base, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"})
    explicit = config.load({**base, "AWS_ENDPOINT": "http://127.0.0.1:9000"})
    assert via_url.storage_identity() == via_s3.storage_identity() == explicit.storage_identity()
    assert via_url.storage_identity() != aws
