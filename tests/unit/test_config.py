"""Tests of walg.config: names, fallbacks, defaults, parsers, the config file and the docs."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import walg.config
from walg.config import (
    BackupSettings,
    CompressionSettings,
    ConcurrencySettings,
    CryptoSettings,
    LogSettings,
    S3Settings,
    Secret,
    Settings,
    find_default_config_file,
    load,
    markdown_table,
    read_config_file,
)
from walg.config.parse import (
    MAX_BYTES,
    format_size,
    parse_bool,
    parse_int,
    parse_rate,
    parse_size,
)
from walg.config.registry import GROUPS, VARIABLES
from walg.errors import EX_USAGE, ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def config_error(env: dict[str, str], config_file: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(env, config_file)
    return info.value


# --- defaults --------------------------------------------------------------------------


def test_defaults_are_wal_gs() -> None:
    """With nothing set, load() succeeds and gives WAL-G's defaults."""
    settings = load({})
    assert settings.storages == ()
    assert settings.concurrency == ConcurrencySettings(upload=16, download=10, upload_disk=1)
    assert settings.compression.method == "lz4"
    assert settings.backup.tar_size_threshold == (1 << 30) - 1
    assert settings.backup.delta_max_steps == 0
    assert settings.backup.delta_origin == "LATEST"
    assert settings.backup.sentinel_user_data is None
    assert settings.backup.verify_page_checksums is False
    assert settings.s3.storage_class == "STANDARD"
    assert settings.s3.max_retries == 15
    assert settings.s3.force_path_style is False
    assert settings.rate_limits.disk is None and settings.rate_limits.network is None
    assert settings.wal.prevent_overwrite is False
    assert settings.log == LogSettings(level="INFO", debug_tracebacks=False)
    assert settings.crypto.enabled is False
    assert settings.postgres.dsn_params() == {}
    assert settings.unknown == ()


def test_registry_defaults_match_dataclass_defaults() -> None:
    """The defaults written in the registry and in the dataclasses are the same."""
    assert load({}) == Settings()


def test_every_registry_entry_is_well_formed() -> None:
    """Each variable has a known group, a one-line description, and no duplicated names."""
    names = [name for var in VARIABLES for name in var.names]
    assert len(names) == len(set(names))
    for var in VARIABLES:
        assert var.group in GROUPS
        assert var.description.endswith(".") and "\n" not in var.description
        assert (var.kind == "choice") == bool(var.choices) or var.kind == "loglevel"


def test_package_exports() -> None:
    """walg.config exports load, Settings and every sub-dataclass through __all__."""
    for name in ("load", "Settings", "StorageSettings", "S3Settings", "GcsSettings",
                 "ConcurrencySettings", "CompressionSettings", "CryptoSettings",
                 "BackupSettings", "RateLimitSettings", "WalSettings", "LogSettings",
                 "PostgresSettings", "Secret"):
        assert name in walg.config.__all__
        assert hasattr(walg.config, name)


def test_empty_values_count_as_unset() -> None:
    """An empty or blank variable is treated as not set, so defaults and fallbacks apply."""
    settings = load({"WALG_UPLOAD_CONCURRENCY": "", "WALG_S3_PREFIX": " ",
                     "WALE_S3_PREFIX": "s3://old/path"})
    assert settings.concurrency.upload == 16
    assert settings.require_storage().variable == "WALE_S3_PREFIX"


def test_settings_pickle_round_trip() -> None:
    """Settings cross process boundaries intact (workers are handed them)."""
    settings = load({"WALG_S3_PREFIX": "s3://b/p", "AWS_SECRET_ACCESS_KEY": "sekrit",
                     "WALG_SENTINEL_USER_DATA": '{"a": 1}'})
    assert pickle.loads(pickle.dumps(settings)) == settings


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    settings = load({})
    with pytest.raises(AttributeError):
        settings.concurrency.upload = 3  # type: ignore[misc]


def test_import_is_light() -> None:
    """Importing walg.config pulls in no cloud, crypto, database or logging SDK."""
    heavy = ("boto3", "botocore", "google.cloud", "gnupg", "psycopg2", "structlog")
    code = f"import sys, walg.config; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- fallbacks -------------------------------------------------------------------------

Getter = Callable[[Settings], object]


def _secret(get: Callable[[Settings], Secret | None]) -> Getter:
    def reveal(settings: Settings) -> object:
        secret = get(settings)
        return None if secret is None else secret.reveal()

    return reveal


FALLBACKS: list[tuple[str, str, str, Getter]] = [
    ("WALG_FILE_PREFIX", "WALE_FILE_PREFIX", "/backups",
     lambda s: s.require_storage().path),
    ("WALG_S3_PREFIX", "WALE_S3_PREFIX", "s3://bucket/x", lambda s: s.require_storage().prefix),
    ("WALG_GS_PREFIX", "WALE_GS_PREFIX", "gs://bucket/x", lambda s: s.require_storage().prefix),
    ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AKIA1", _secret(lambda s: s.s3.access_key_id)),
    ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "sk", _secret(lambda s: s.s3.secret_access_key)),
    ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "tok", _secret(lambda s: s.s3.session_token)),
    ("AWS_REGION", "AWS_DEFAULT_REGION", "eu-west-1", lambda s: s.s3.region),
    ("AWS_ENDPOINT", "AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000", lambda s: s.s3.endpoint),
    ("AWS_ENDPOINT", "AWS_ENDPOINT_URL", "http://127.0.0.1:9000", lambda s: s.s3.endpoint),
    ("WALG_S3_STORAGE_CLASS", "WALE_S3_STORAGE_CLASS", "GLACIER", lambda s: s.s3.storage_class),
    ("WALG_S3_STORAGE_CLASS", "S3_STORAGE_CLASS", "GLACIER", lambda s: s.s3.storage_class),
    ("WALG_S3_SSE", "WALE_S3_SSE", "AES256", lambda s: s.s3.sse),
    ("WALG_S3_SSE", "S3_SSE", "AES256", lambda s: s.s3.sse),
    ("WALG_S3_SSE_KMS_ID", "WALE_S3_SSE_KMS_ID", "kms1", lambda s: s.s3.sse_kms_id),
    ("WALG_S3_SSE_KMS_ID", "S3_SSE_KMS_ID", "kms1", lambda s: s.s3.sse_kms_id),
    ("WALG_S3_MAX_RETRIES", "WALE_S3_MAX_RETRIES", "3", lambda s: str(s.s3.max_retries)),
    ("WALG_S3_MAX_RETRIES", "S3_MAX_RETRIES", "3", lambda s: str(s.s3.max_retries)),
    ("WALG_GPG_KEY_ID", "WALE_GPG_KEY_ID", "ABCD1234", _secret(lambda s: s.crypto.gpg_key_id)),
]


def test_fallback_table_covers_the_registry() -> None:
    """Every fallback in the registry has a case in the fallback tests below."""
    registered = {(var.name, fb) for var in VARIABLES for fb in var.fallbacks}
    assert registered == {(name, fb) for name, fb, _, _ in FALLBACKS}


@pytest.mark.parametrize(("name", "fallback", "value", "get"), FALLBACKS)
def test_fallback_is_used_when_name_is_unset(
    name: str, fallback: str, value: str, get: Getter
) -> None:
    """A fallback variable (e.g. WALE_S3_PREFIX) is read when its WAL-G name is missing."""
    assert get(load({fallback: value})) == value


@pytest.mark.parametrize(("name", "fallback", "value", "get"), FALLBACKS)
def test_name_wins_over_fallback(name: str, fallback: str, value: str, get: Getter) -> None:
    """When both are set, the WAL-G name (e.g. WALG_S3_PREFIX) wins over the fallback."""
    other = "/other" if value.startswith("/") else value[:-1] + "9"
    assert get(load({name: value, fallback: other})) == value


def test_fallback_errors_name_the_variable_used() -> None:
    """A bad value read through a fallback is reported under the fallback's name."""
    err = config_error({"WALE_S3_PREFIX": "s3:/bucket"})
    assert "WALE_S3_PREFIX" in err.msg


# --- storage ---------------------------------------------------------------------------


def test_no_storage_error_names_all_prefixes() -> None:
    """require_storage() with no prefix set names every prefix variable."""
    with pytest.raises(ConfigError) as info:
        load({}).require_storage()
    text = info.value.msg + info.value.hint
    for name in ("WALG_FILE_PREFIX", "WALG_S3_PREFIX", "WALG_GS_PREFIX", "WALE_S3_PREFIX"):
        assert name in text
    assert info.value.exit_code == EX_USAGE


def test_several_storages_error_names_the_variables_set() -> None:
    """require_storage() with two prefixes set names both of them."""
    settings = load({"WALG_FILE_PREFIX": "/b", "WALE_GS_PREFIX": "gs://b/p"})
    with pytest.raises(ConfigError) as info:
        settings.require_storage()
    assert "WALG_FILE_PREFIX" in info.value.msg and "WALE_GS_PREFIX" in info.value.msg


def test_same_storage_under_both_names_is_one_storage() -> None:
    """WALG_S3_PREFIX and WALE_S3_PREFIX together configure one storage, not several."""
    storage = load({"WALG_S3_PREFIX": "s3://new/p", "WALE_S3_PREFIX": "s3://old/p"})
    assert storage.require_storage().bucket == "new"


@pytest.mark.parametrize(
    ("env", "kind", "bucket", "path", "url"),
    [
        ({"WALG_S3_PREFIX": "s3://bucket/a/b/"}, "s3", "bucket", "a/b", "s3://bucket/a/b"),
        ({"WALG_S3_PREFIX": "s3://bucket"}, "s3", "bucket", "", "s3://bucket"),
        ({"WALG_S3_PREFIX": "S3://my.bucket_1/x"}, "s3", "my.bucket_1", "x", "s3://my.bucket_1/x"),
        ({"WALG_GS_PREFIX": "gs://b/walg"}, "gs", "b", "walg", "gs://b/walg"),
        ({"WALG_FILE_PREFIX": "/var/backups/"}, "file", "", "/var/backups", "/var/backups"),
        ({"WALG_FILE_PREFIX": "/"}, "file", "", "/", "/"),
        ({"WALE_FILE_PREFIX": "file://localhost/srv/wal-e"}, "file", "", "/srv/wal-e",
         "/srv/wal-e"),
    ],
)
def test_prefixes_parse(env: dict[str, str], kind: str, bucket: str, path: str, url: str) -> None:
    """Prefixes split into kind, bucket and a path without outer slashes."""
    storage = load(env).require_storage()
    assert (storage.kind, storage.bucket, storage.path, storage.url) == (kind, bucket, path, url)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("WALG_S3_PREFIX", "s3:/bucket", "two slashes"),
        ("WALG_S3_PREFIX", "bucket/path", "no scheme"),
        ("WALG_S3_PREFIX", "s3://", "bucket name is missing"),
        ("WALG_S3_PREFIX", "s3:///path", "bucket name is missing"),
        ("WALG_S3_PREFIX", "gs://bucket/path", "must start with s3://"),
        ("WALG_S3_PREFIX", "s3://minio:9000/bucket", "invalid bucket name"),
        ("WALG_S3_PREFIX", "s3://bucket/a b", "no spaces"),
        ("WALG_S3_PREFIX", "s3://bucket/p?versionId=1", "'?'"),
        ("WALG_GS_PREFIX", "s3://bucket/path", "must start with gs://"),
        ("WALG_FILE_PREFIX", "s3://bucket/path", "local directory"),
    ],
)
def test_malformed_prefixes_are_config_errors(name: str, value: str, words: str) -> None:
    """A malformed prefix is a ConfigError naming the variable, the value and the fix."""
    err = config_error({name: value})
    assert name in err.msg and repr(value) in err.msg and words in err.msg
    assert "e.g." in err.hint


# --- parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1073741823", 1073741823),
        (" 42 ", 42),
        ("10B", 10),
        ("512K", 512 * 1024),
        ("512k", 512 * 1024),
        ("512KB", 512 * 1024),
        ("512KiB", 512 * 1024),
        ("64M", 64 << 20),
        ("64MB", 64 << 20),
        ("64mib", 64 << 20),
        ("1G", 1 << 30),
        ("1GiB", 1 << 30),
        ("1 GB", 1 << 30),
        ("1.5G", 3 << 29),
        (".5K", 512),
        ("2T", 2 << 40),
        ("1.0001K", 1024),  # fractions of a byte are rounded down
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    """Sizes are bytes, or a number with a 1024-based unit however the unit is spelt."""
    assert parse_size("WALG_TAR_SIZE_THRESHOLD", text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "1.5", "1.5B", "10X", "1 0", "1e9", "10 MBs", "0x10", "9999999P"]
)
def test_parse_size_errors(text: str) -> None:
    """A bad size is a ConfigError naming the variable and value, with examples."""
    with pytest.raises(ConfigError) as info:
        parse_size("WALG_TAR_SIZE_THRESHOLD", text)
    assert "WALG_TAR_SIZE_THRESHOLD" in info.value.msg and repr(text) in info.value.msg
    assert "64MB" in info.value.hint


@given(st.integers(min_value=0, max_value=MAX_BYTES))
def test_size_format_round_trip(size: int) -> None:
    """Formatting n bytes and parsing the result gives n back."""
    assert parse_size("X", format_size(size)) == size
    assert parse_size("X", str(size)) == size


@given(st.integers(min_value=0, max_value=2**20), st.sampled_from(["K", "MiB", "GB", "t"]))
def test_size_units_multiply_by_powers_of_1024(count: int, unit: str) -> None:
    """n followed by a unit is n times that unit's power of 1024."""
    power = {"k": 1, "m": 2, "g": 3, "t": 4}[unit[0].lower()]
    assert parse_size("X", f"{count}{unit}") == count * 1024**power


def test_format_size_picks_the_largest_exact_unit() -> None:
    """format_size spells sizes readably and exactly."""
    assert [format_size(n) for n in (0, 1, 1024, 1536, 1 << 30, (1 << 30) - 1)] == [
        "0", "1", "1KiB", "1536", "1GiB", "1073741823"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), ("104857600", 104857600), ("100MB", 100 << 20), ("100MB/s", 100 << 20),
     ("1.5k/S", 1536)],
)
def test_parse_rate(text: str, expected: int) -> None:
    """Rates are positive sizes per second, optionally written with /s."""
    assert parse_rate("WALG_NETWORK_RATE_LIMIT", text) == expected


@pytest.mark.parametrize("text", ["0", "0MB/s", "fast", "-5", "10/m"])
def test_parse_rate_errors(text: str) -> None:
    """A zero, negative or malformed rate is a ConfigError naming the variable and value."""
    with pytest.raises(ConfigError) as info:
        parse_rate("WALG_NETWORK_RATE_LIMIT", text)
    assert "WALG_NETWORK_RATE_LIMIT" in info.value.msg and repr(text) in info.value.msg
    assert "100MB" in info.value.hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True), ("t", True),
     ("false", False), ("False", False), ("0", False), ("no", False), ("OFF", False),
     ("f", False), (" true\n", True)],
)
def test_parse_bool(text: str, expected: bool) -> None:
    """Booleans accept true/false, 1/0, yes/no, on/off (and Go's t/f) in any case."""
    assert parse_bool("WALG_PREVENT_WAL_OVERWRITE", text) is expected


@pytest.mark.parametrize("text", ["", "2", "enabled", "tru", "y"])
def test_parse_bool_errors(text: str) -> None:
    """Anything else is a ConfigError naming the variable and value."""
    with pytest.raises(ConfigError) as info:
        parse_bool("WALG_PREVENT_WAL_OVERWRITE", text)
    assert "WALG_PREVENT_WAL_OVERWRITE" in info.value.msg and repr(text) in info.value.msg
    assert "true" in info.value.hint


@pytest.mark.parametrize(("text", "expected"), [("0", 0), ("16", 16), (" +3 ", 3), ("-2", -2)])
def test_parse_int(text: str, expected: int) -> None:
    """Integers are plain decimal numbers."""
    assert parse_int("N", text) == expected


@pytest.mark.parametrize(
    ("text", "minimum", "maximum", "words"),
    [("1.5", None, None, "not an integer"), ("ten", None, None, "not an integer"),
     ("", None, None, "not an integer"), ("0", 1, None, "at least 1"),
     ("70000", 1, 65535, "at most 65535")],
)
def test_parse_int_errors(text: str, minimum: int | None, maximum: int | None, words: str) -> None:
    """Malformed or out-of-range integers are ConfigErrors with an example in the hint."""
    with pytest.raises(ConfigError) as info:
        parse_int("N", text, minimum=minimum, maximum=maximum)
    assert "N=" in info.value.msg and words in info.value.msg and "e.g." in info.value.hint


# --- typed settings through load() -----------------------------------------------------


@pytest.mark.parametrize(
    "name", ["WALG_UPLOAD_CONCURRENCY", "WALG_DOWNLOAD_CONCURRENCY", "WALG_UPLOAD_DISK_CONCURRENCY"]
)
@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_concurrency_must_be_a_positive_integer(name: str, value: str) -> None:
    """Concurrency settings below 1 or not integers are ConfigErrors naming the variable."""
    assert name in config_error({name: value}).msg


def test_values_are_typed() -> None:
    """Set values arrive parsed into the right types and groups."""
    settings = load({
        "WALG_UPLOAD_CONCURRENCY": "4", "WALG_DOWNLOAD_CONCURRENCY": "3",
        "WALG_UPLOAD_DISK_CONCURRENCY": "2", "WALG_TAR_SIZE_THRESHOLD": "64MB",
        "WALG_DELTA_MAX_STEPS": "6", "WALG_DELTA_ORIGIN": "latest_full",
        "WALG_VERIFY_PAGE_CHECKSUMS": "yes", "WALG_DISK_RATE_LIMIT": "10MB",
        "WALG_NETWORK_RATE_LIMIT": "1048576", "WALG_PREVENT_WAL_OVERWRITE": "true",
        "AWS_S3_FORCE_PATH_STYLE": "1", "AWS_ENDPOINT": "http://127.0.0.1:9000",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023", "PGPORT": "5433",
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/gcs.json",
    })
    assert settings.concurrency == ConcurrencySettings(upload=4, download=3, upload_disk=2)
    assert settings.backup.tar_size_threshold == 64 << 20
    assert settings.backup.delta_max_steps == 6
    assert settings.backup.delta_origin == "LATEST_FULL"
    assert settings.backup.verify_page_checksums is True
    assert (settings.rate_limits.disk, settings.rate_limits.network) == (10 << 20, 1 << 20)
    assert settings.wal.prevent_overwrite is True
    assert settings.s3.force_path_style is True
    assert settings.s3.endpoint == "http://127.0.0.1:9000"
    assert settings.gcs.emulator_host == "http://127.0.0.1:9023"
    assert settings.gcs.credentials_file == "/etc/gcs.json"
    assert settings.postgres.port == 5433


@pytest.mark.parametrize(
    ("env", "name"),
    [({"WALG_DELTA_MAX_STEPS": "-1"}, "WALG_DELTA_MAX_STEPS"),
     ({"WALG_DELTA_ORIGIN": "OLDEST"}, "WALG_DELTA_ORIGIN"),
     ({"WALG_TAR_SIZE_THRESHOLD": "0"}, "WALG_TAR_SIZE_THRESHOLD"),
     ({"WALG_TAR_SIZE_THRESHOLD": "big"}, "WALG_TAR_SIZE_THRESHOLD"),
     ({"WALG_DISK_RATE_LIMIT": "0"}, "WALG_DISK_RATE_LIMIT"),
     ({"WALG_VERIFY_PAGE_CHECKSUMS": "maybe"}, "WALG_VERIFY_PAGE_CHECKSUMS"),
     ({"AWS_S3_FORCE_PATH_STYLE": "sure"}, "AWS_S3_FORCE_PATH_STYLE"),
     ({"WALG_S3_MAX_RETRIES": "-1"}, "WALG_S3_MAX_RETRIES"),
     ({"PGPORT": "0"}, "PGPORT"),
     ({"PGPORT": "postgres"}, "PGPORT"),
     ({"WALG_LOG_LEVEL": "LOUD"}, "WALG_LOG_LEVEL")],
)
def test_bad_values_are_config_errors(env: dict[str, str], name: str) -> None:
    """Each bad value fails load() with a ConfigError naming the variable, value and a fix."""
    err = config_error(env)
    assert name in err.msg and repr(env[name]) in err.msg and err.hint
    assert err.exit_code == EX_USAGE


@pytest.mark.parametrize(
    ("value", "method", "extension"),
    [("lz4", "lz4", "lz4"), ("lzma", "lzma", "lzma"), ("brotli", "brotli", "br"),
     ("BROTLI", "brotli", "br"), ("none", "none", ""), ("NONE", "none", "")],
)
def test_compression_methods(value: str, method: str, extension: str) -> None:
    """The supported compression methods load, with WAL-G's object name extension."""
    compression = load({"WALG_COMPRESSION_METHOD": value}).compression
    assert compression == CompressionSettings(method=method)  # type: ignore[arg-type]
    assert compression.extension == extension


@pytest.mark.parametrize("value", ["zstd", "gzip", "lzo"])
def test_unsupported_compression_lists_the_supported_ones(value: str) -> None:
    """An unsupported compression method (zstd included) names lz4, lzma, brotli and none
    (WAL-G's none: objects stored as they are, names without an extension)."""
    err = config_error({"WALG_COMPRESSION_METHOD": value})
    assert "WALG_COMPRESSION_METHOD" in err.msg and repr(value) in err.msg
    assert all(method in err.hint for method in ("lz4", "lzma", "brotli", "none"))


@pytest.mark.parametrize(
    ("value", "level", "tracebacks"),
    [("NORMAL", "INFO", False), ("DEVEL", "DEBUG", True), ("devel", "DEBUG", True),
     ("ERROR", "ERROR", False), ("debug", "DEBUG", True), ("Info", "INFO", False),
     ("warning", "WARNING", False), ("WARN", "WARNING", False)],
)
def test_log_levels(value: str, level: str, tracebacks: bool) -> None:
    """WAL-G's and stdlib log level names map to a stdlib level; DEVEL/DEBUG show tracebacks."""
    log = load({"WALG_LOG_LEVEL": value}).log
    assert (log.level, log.debug_tracebacks) == (level, tracebacks)
    assert log.levelno == logging.getLevelNamesMapping()[level]


@pytest.mark.parametrize(
    ("value", "expected"),
    [('{"env": "prod", "n": 1}', {"env": "prod", "n": 1}), ("[1, 2]", [1, 2]), ("7", 7),
     ("nightly backup", "nightly backup"), ("{broken", "{broken")],
)
def test_sentinel_user_data(value: str, expected: object) -> None:
    """WALG_SENTINEL_USER_DATA is the JSON value it spells, or else the text itself."""
    assert load({"WALG_SENTINEL_USER_DATA": value}).backup.sentinel_user_data == expected


def test_sentinel_user_data_is_a_fresh_copy() -> None:
    """Changing the returned user data does not change the settings."""
    backup = BackupSettings(sentinel_user_data_text='{"a": 1}')
    data = backup.sentinel_user_data
    assert isinstance(data, dict)
    data["a"] = 2
    assert backup.sentinel_user_data == {"a": 1}


def test_unknown_walg_variables_are_listed_not_rejected() -> None:
    """Unknown WALG_/WALE_ names are listed in Settings.unknown; other names are ignored."""
    settings = load({"WALG_FROBNICATE": "1", "WALE_OLD_THING": "x", "HOME": "/root",
                     "WALG_S3_PREFIX": "s3://b", "WALE_GPG_KEY_ID": "k"})
    assert settings.unknown == ("WALE_OLD_THING", "WALG_FROBNICATE")


def test_postgres_dsn_params() -> None:
    """PG* variables become libpq keyword arguments for psycopg2."""
    postgres = load({"PGHOST": "/var/run/postgresql", "PGPORT": "5432", "PGUSER": "postgres",
                     "PGPASSWORD": "pw", "PGPASSFILE": "/p", "PGDATABASE": "db",
                     "PGDATA": "/data"}).postgres
    assert postgres.dsn_params() == {"host": "/var/run/postgresql", "port": "5432",
                                     "user": "postgres", "password": "pw", "passfile": "/p",
                                     "dbname": "db"}
    assert postgres.data_dir == "/data"


def test_crypto_settings() -> None:
    """PGP settings are kept, and any key source enables encryption."""
    crypto = load({"WALG_PGP_KEY_PATH": "/k.asc", "WALG_PGP_KEY_PASSPHRASE": "pp"}).crypto
    assert crypto.enabled and crypto.pgp_key_path == "/k.asc"
    assert crypto.pgp_key_passphrase is not None
    assert crypto.pgp_key_passphrase.reveal() == "pp"
    assert CryptoSettings(pgp_key=Secret("k")).enabled


# --- secrets ---------------------------------------------------------------------------

SECRETS = {
    "WALG_PGP_KEY": "-----BEGIN PGP PRIVATE KEY BLOCK-----\nxcLYBGVerySecretKeyMaterial\n",
    "WALG_PGP_KEY_PASSPHRASE": "pass-phrase-123",
    "WALG_GPG_KEY_ID": "DEADBEEFCAFE",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN",
    "PGPASSWORD": "pg-password-456",
}


def test_secrets_never_appear_in_repr_or_str() -> None:
    """Keys, passphrases, AWS credentials and PGPASSWORD are hidden in repr() and str()."""
    settings = load(SECRETS)
    shown = repr(settings) + str(settings) + repr(settings.s3) + str(settings.crypto)
    shown += repr(settings.postgres) + f"{settings.postgres.password}"
    for value in SECRETS.values():
        assert value.strip() not in shown
        assert "VerySecret" not in shown
    assert "***" in shown


def test_secrets_are_still_available_to_the_code_that_needs_them() -> None:
    """Secret.reveal() gives the value back (trailing newlines trimmed, as WAL-G does)."""
    settings = load(SECRETS)
    assert settings.s3.secret_access_key == Secret(SECRETS["AWS_SECRET_ACCESS_KEY"])
    assert settings.crypto.pgp_key is not None
    assert settings.crypto.pgp_key.reveal() == SECRETS["WALG_PGP_KEY"].rstrip("\n")
    assert S3Settings(session_token=Secret("t")).session_token == Secret("t")


# --- config file -----------------------------------------------------------------------


def write_config(tmp_path: Path, content: object, raw: str | None = None) -> str:
    path = tmp_path / "walg.json"
    path.write_text(raw if raw is not None else json.dumps(content), encoding="utf-8")
    return str(path)


def test_config_file_values_are_used(tmp_path: Path) -> None:
    """Values in the --config JSON file are used, numbers and booleans included."""
    path = write_config(tmp_path, {"WALG_S3_PREFIX": "s3://file/p", "WALG_UPLOAD_CONCURRENCY": 4,
                                   "walg_prevent_wal_overwrite": True,
                                   "WALG_TAR_SIZE_THRESHOLD": 1.5e3})
    settings = load({}, path)
    assert settings.require_storage().bucket == "file"
    assert settings.concurrency.upload == 4
    assert settings.wal.prevent_overwrite is True
    assert settings.backup.tar_size_threshold == 1500
    assert settings.config_file == path


def test_environment_overrides_config_file(tmp_path: Path) -> None:
    """A variable in the environment wins over the same name in the config file."""
    path = write_config(tmp_path, {"WALG_UPLOAD_CONCURRENCY": "4", "WALG_LOG_LEVEL": "DEVEL"})
    settings = load({"WALG_UPLOAD_CONCURRENCY": "8", "WALG_LOG_LEVEL": ""}, path)
    assert settings.concurrency.upload == 8
    assert settings.log.level == "DEBUG"  # an empty variable does not hide the file's value


def test_empty_values_in_config_file_count_as_unset(tmp_path: Path) -> None:
    """An empty string in the config file is treated as not set, like an empty variable."""
    path = write_config(tmp_path, {"WALG_S3_PREFIX": "", "WALG_UPLOAD_CONCURRENCY": " "})
    settings = load({}, path)
    assert settings.storages == () and settings.concurrency.upload == 16


def test_file_name_wins_over_environment_fallback(tmp_path: Path) -> None:
    """Precedence is per name: WALG_S3_PREFIX in the file beats WALE_S3_PREFIX in the env."""
    path = write_config(tmp_path, {"WALG_S3_PREFIX": "s3://file/p"})
    assert load({"WALE_S3_PREFIX": "s3://env/p"}, path).require_storage().bucket == "file"


@pytest.mark.parametrize(
    ("content", "raw", "words"),
    [(None, "{not json", "not valid JSON"),
     (["WALG_S3_PREFIX"], None, "holds an array, not a JSON object"),
     ("text", None, "holds a string, not a JSON object"),
     (None, "", "not valid JSON"),
     ({"WALG_DELTA_MAX_STEPS": [1]}, None, "WALG_DELTA_MAX_STEPS is an array")],
)
def test_config_file_errors(tmp_path: Path, content: object, raw: str | None, words: str) -> None:
    """A malformed config file is a ConfigError naming the file, with a hint."""
    name = write_config(tmp_path, content, raw)
    err = config_error({}, name)
    assert name in err.msg and words in err.msg and err.hint


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    """A config file that is not UTF-8 text is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "walg.json"
    path.write_bytes(b'{"WALG_S3_PREFIX": "s3://b\xff"}')
    err = config_error({}, str(path))
    assert str(path) in err.msg and "UTF-8" in err.msg


def test_missing_config_file(tmp_path: Path) -> None:
    """A --config path that does not exist is a ConfigError naming it."""
    missing = str(tmp_path / "nope.json")
    err = config_error({}, missing)
    assert missing in err.msg and "does not exist" in err.msg and "--config" in err.hint


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    """A --config path that is a directory is a ConfigError, not an OSError."""
    assert str(tmp_path) in config_error({}, str(tmp_path)).msg


def test_read_config_file_upper_cases_names(tmp_path: Path) -> None:
    """Config file names are case-insensitive, as in WAL-G (viper)."""
    path = write_config(tmp_path, {"walg_s3_prefix": "s3://b", "PgPort": 5432, "x": False})
    assert read_config_file(path) == {"WALG_S3_PREFIX": "s3://b", "PGPORT": "5432", "X": "false"}


def test_find_default_config_file(tmp_path: Path) -> None:
    """$HOME/.walg.json is found when it exists, and only then."""
    assert find_default_config_file({"HOME": str(tmp_path)}) is None
    assert find_default_config_file({}) is None
    (tmp_path / ".walg.json").write_text("{}", encoding="utf-8")
    assert find_default_config_file({"HOME": str(tmp_path)}) == str(tmp_path / ".walg.json")


# --- documentation ---------------------------------------------------------------------


def test_readme_table_is_in_sync() -> None:
    """README's configuration section is exactly markdown_table() (python -m walg.config)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- config-table:start -->\n") + len("<!-- config-table:start -->\n")
    end = text.index("<!-- config-table:end -->")
    assert text[start:end] == markdown_table(), "paste the output of: python -m walg.config"


def test_docs_table_lists_every_variable() -> None:
    """Every registered variable and fallback appears in the table."""
    table = markdown_table()
    for var in VARIABLES:
        for name in var.names:
            assert f"`{name}`" in table
