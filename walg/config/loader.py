"""Read settings once: from a mapping (the environment) over an optional config file.

Only this module turns raw strings into :class:`~walg.config.settings.Settings`, and it
reads every value through the registry, so names, fallbacks and defaults live in one place.
Precedence is per name: a variable in ``environ`` overrides the same name in the file; for
each setting its own name is looked up before its fallbacks (as WAL-G does with viper).
Empty values count as unset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from walg.config.files import find_default_config_file, read_config_file
from walg.config.parse import (
    format_size,
    parse_bool,
    parse_choice,
    parse_duration,
    parse_file_prefix,
    parse_int,
    parse_log_level,
    parse_rate,
    parse_size,
    parse_url_prefix,
)
from walg.config.registry import KNOWN_NAMES, Kind, Var, variable
from walg.config.settings import (
    BackupSettings,
    CompressionMethod,
    CompressionSettings,
    ConcurrencySettings,
    CryptoSettings,
    DeltaOrigin,
    GcsSettings,
    LogSettings,
    PostgresSettings,
    RateLimitSettings,
    S3Settings,
    Secret,
    Settings,
    StorageKind,
    StorageSettings,
    WalSettings,
)
from walg.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["find_default_config_file", "load", "read_config_file"]

#: How every name of :data:`walg.config.unsupported.UNSUPPORTED` begins (a test checks it):
#: values without such a name the registry does not know skip that module and its table.
UNSUPPORTED_PREFIXES: tuple[str, ...] = ("WALG_", "WALE_", "S3_", "GCS_", "YC_")


def load(environ: Mapping[str, str], config_file: str | None = None) -> Settings:
    """Build the settings from ``environ`` over the optional ``config_file`` (JSON, YAML
    or TOML: :mod:`walg.config.files`).

    Succeeds with no storage configured (so that ``--help`` works); commands that need
    storage call :meth:`Settings.require_storage`. Raises ConfigError for a bad value.
    """
    file_values = read_config_file(config_file) if config_file is not None else {}
    values = _merge(file_values, environ)
    unknown, noted = _unsupported(values)
    unknown += _odd_names(file_values)
    reader = _Reader(values)
    return Settings(
        storages=_storages(reader),
        s3=_s3(reader),
        gcs=GcsSettings(
            credentials_file=reader.text("GOOGLE_APPLICATION_CREDENTIALS", "path"),
            emulator_host=reader.text("STORAGE_EMULATOR_HOST"),
        ),
        concurrency=ConcurrencySettings(
            upload=reader.number("WALG_UPLOAD_CONCURRENCY"),
            download=reader.number("WALG_DOWNLOAD_CONCURRENCY"),
            upload_disk=reader.number("WALG_UPLOAD_DISK_CONCURRENCY"),
            chaining=reader.flag("WALG_PIPELINE_CHAINING"),
        ),
        compression=CompressionSettings(
            method=cast(CompressionMethod, reader.choice("WALG_COMPRESSION_METHOD")),
        ),
        crypto=_crypto(reader),
        backup=_backup(reader),
        rate_limits=RateLimitSettings(
            disk=reader.rate("WALG_DISK_RATE_LIMIT"),
            network=reader.rate("WALG_NETWORK_RATE_LIMIT"),
        ),
        wal=WalSettings(
            prevent_overwrite=reader.flag("WALG_PREVENT_WAL_OVERWRITE"),
            background=reader.flag("WALG_WAL_BACKGROUND"),
            background_idle=reader.duration("WALG_WAL_BACKGROUND_IDLE"),
            daemon_upload_timeout=reader.duration("WALG_DAEMON_WAL_UPLOAD_TIMEOUT"),
            integrity_max_delayed=reader.number("WALG_INTEGRITY_MAX_DELAYED_WALS"),
            check_content=reader.flag("WALG_WAL_CHECK_CONTENT"),
        ),
        log=_log(reader),
        postgres=_postgres(reader),
        storage_retry_budget=reader.duration("WALG_STORAGE_RETRY_BUDGET"),
        config_file=config_file,
        unknown=unknown,
        noted=noted,
        given=_given(values),
    )


def _unsupported(values: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The unknown and the noted names in ``values``; ConfigError for a refused one."""
    if not any(
        name.startswith(UNSUPPORTED_PREFIXES) and name not in KNOWN_NAMES for name in values
    ):
        return (), ()
    from walg.config import unsupported

    unsupported.check_supported(values)
    return unsupported.unknown(values), unsupported.noted(values)


def _odd_names(file_values: Mapping[str, str]) -> tuple[str, ...]:
    """Names in the config file that no setting of walg or WAL-G can have (a nested
    table's ``S3.PREFIX``, ``WALG-S3-PREFIX``): WAL-G warns about every unknown key."""
    return tuple(
        sorted(
            name
            for name in file_values
            if not (name[:1].isalpha() and name.isascii() and name.replace("_", "").isalnum())
        )
    )


def _given(values: Mapping[str, str]) -> tuple[tuple[str, Secret], ...]:
    """Known variables other than PG*, as secrets (they may hold keys)."""
    return tuple(
        (name, Secret(value))
        for name, value in sorted(values.items())
        if name in KNOWN_NAMES and not name.startswith("PG")
    )


def _merge(file_values: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment over the file, name by name; empty or blank values count as unset."""
    values = {name: value for name, value in file_values.items() if value.strip()}
    values.update((name, value) for name, value in environ.items() if value.strip())
    return values


class _Reader:
    """Typed look-ups of registry variables in the merged values."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def _find(self, name: str, kind: Kind) -> tuple[Var, str, str | None]:
        """The registry entry, the name the value came from, and the value or default."""
        var = variable(name)
        if var.kind != kind:
            raise TypeError(f"{name} is registered as {var.kind}, not {kind}")
        for candidate in var.names:
            if candidate in self._values:
                return var, candidate, self._values[candidate]
        return var, name, var.default

    def _required(self, name: str, kind: Kind) -> tuple[Var, str, str]:
        var, source, raw = self._find(name, kind)
        if raw is None:
            raise LookupError(f"{name} has no default in the registry")
        return var, source, raw

    def text(self, name: str, kind: Kind = "text") -> str | None:
        raw = self._find(name, kind)[2]
        return None if raw is None else raw.strip()

    def secret(self, name: str, strip: bool = True) -> Secret | None:
        raw = self._find(name, "secret")[2]
        if raw is None:
            return None
        return Secret(raw.rstrip("\r\n") if strip else raw)

    def prefix(self, name: str) -> tuple[str, str] | None:
        _, source, raw = self._find(name, "prefix")
        return None if raw is None else (source, raw)

    def flag(self, name: str) -> bool:
        _, source, raw = self._required(name, "bool")
        return parse_bool(source, raw)

    def number(self, name: str) -> int:
        var, source, raw = self._required(name, "int")
        return parse_int(source, raw, minimum=var.minimum, maximum=var.maximum)

    def optional_number(self, name: str) -> int | None:
        var, source, raw = self._find(name, "int")
        if raw is None:
            return None
        return parse_int(source, raw, minimum=var.minimum, maximum=var.maximum)

    def size(self, name: str) -> int:
        var, source, raw = self._required(name, "size")
        size = parse_size(source, raw)
        if var.minimum is not None and size < var.minimum:
            raise ConfigError(
                f"{source}={raw!r} is too small: it must be at least {var.minimum} bytes",
                hint=f"e.g. {source}={format_size(1024**3)}",
            )
        return size

    def duration(self, name: str) -> float:
        _, source, raw = self._required(name, "duration")
        return parse_duration(source, raw)

    def rate(self, name: str) -> int | None:
        _, source, raw = self._find(name, "rate")
        return None if raw is None else parse_rate(source, raw)

    def choice(self, name: str) -> str:
        var, source, raw = self._required(name, "choice")
        return parse_choice(source, raw, var.choices)

    def log_level(self, name: str) -> str:
        _, source, raw = self._required(name, "loglevel")
        return parse_log_level(source, raw)


_PREFIXES: tuple[tuple[str, StorageKind], ...] = (
    ("WALG_FILE_PREFIX", "file"),
    ("WALG_S3_PREFIX", "s3"),
    ("WALG_GS_PREFIX", "gs"),
)


def _storages(reader: _Reader) -> tuple[StorageSettings, ...]:
    storages = []
    for name, kind in _PREFIXES:
        found = reader.prefix(name)
        if found is None:
            continue
        source, raw = found
        if kind == "file":
            bucket, path = "", parse_file_prefix(source, raw)
        else:
            bucket, path = parse_url_prefix(source, raw, kind)
        storages.append(StorageSettings(kind, bucket, path, variable=source, prefix=raw))
    return tuple(storages)


def _s3(reader: _Reader) -> S3Settings:
    return S3Settings(
        access_key_id=reader.secret("AWS_ACCESS_KEY_ID"),
        secret_access_key=reader.secret("AWS_SECRET_ACCESS_KEY"),
        session_token=reader.secret("AWS_SESSION_TOKEN"),
        profile=reader.text("AWS_PROFILE"),
        region=reader.text("AWS_REGION"),
        endpoint=reader.text("AWS_ENDPOINT"),
        force_path_style=reader.flag("AWS_S3_FORCE_PATH_STYLE"),
        storage_class=reader.text("WALG_S3_STORAGE_CLASS") or "STANDARD",
        sse=reader.text("WALG_S3_SSE"),
        sse_kms_id=reader.text("WALG_S3_SSE_KMS_ID"),
        max_retries=reader.number("WALG_S3_MAX_RETRIES"),
    )


def _crypto(reader: _Reader) -> CryptoSettings:
    return CryptoSettings(
        pgp_key=reader.secret("WALG_PGP_KEY"),
        pgp_key_path=reader.text("WALG_PGP_KEY_PATH", "path"),
        pgp_key_passphrase=reader.secret("WALG_PGP_KEY_PASSPHRASE"),
        gpg_key_id=reader.secret("WALG_GPG_KEY_ID"),
        # as WAL-G reads it: not even a trailing newline is stripped (the key is its bytes)
        libsodium_key=reader.secret("WALG_LIBSODIUM_KEY", strip=False),
        libsodium_key_path=reader.text("WALG_LIBSODIUM_KEY_PATH", "path"),
        libsodium_key_transform=reader.choice("WALG_LIBSODIUM_KEY_TRANSFORM"),
    )


def _backup(reader: _Reader) -> BackupSettings:
    user_data = reader.text("WALG_SENTINEL_USER_DATA", "json")
    return BackupSettings(
        tar_size_threshold=reader.size("WALG_TAR_SIZE_THRESHOLD"),
        delta_max_steps=reader.number("WALG_DELTA_MAX_STEPS"),
        delta_origin=cast(DeltaOrigin, reader.choice("WALG_DELTA_ORIGIN")),
        sentinel_user_data_text=user_data,
        delta_from_name=reader.text("WALG_DELTA_FROM_NAME") or None,
        delta_from_user_data=reader.text("WALG_DELTA_FROM_USER_DATA", "json") or None,
        fetch_target_user_data=reader.text("WALG_FETCH_TARGET_USER_DATA", "json") or None,
        verify_page_checksums=reader.flag("WALG_VERIFY_PAGE_CHECKSUMS"),
        stop_backup_timeout=reader.duration("WALG_STOP_BACKUP_TIMEOUT"),
        replay_timeout=reader.duration("WALG_REPLAY_TIMEOUT"),
        archive_check=reader.flag("WALG_ARCHIVE_CHECK"),
    )


def _log(reader: _Reader) -> LogSettings:
    level = reader.log_level("WALG_LOG_LEVEL")
    return LogSettings(
        level=level, debug_tracebacks=level == "DEBUG", format=reader.choice("WALG_LOG_FORMAT")
    )


def _postgres(reader: _Reader) -> PostgresSettings:
    return PostgresSettings(
        host=reader.text("PGHOST"),
        port=reader.optional_number("PGPORT"),
        user=reader.text("PGUSER"),
        password=reader.secret("PGPASSWORD"),
        passfile=reader.text("PGPASSFILE", "path"),
        database=reader.text("PGDATABASE"),
        data_dir=reader.text("PGDATA", "path"),
    )
