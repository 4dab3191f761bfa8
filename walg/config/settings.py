"""The typed, frozen settings that :func:`walg.config.load` returns.

Every class is a frozen dataclass whose defaults are WAL-G's (the registry holds the same
defaults as text; a test keeps both in step). All of them pickle, so worker processes can
be given settings and build their own clients from them. Secret values are wrapped in
:class:`Secret`, whose ``repr`` and ``str`` are ``***``, so settings can be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from walg.config.parse import parse_json_or_text
from walg.errors import ConfigError

__all__ = [
    "BackupSettings",
    "CompressionMethod",
    "CompressionSettings",
    "ConcurrencySettings",
    "CryptoSettings",
    "DeltaOrigin",
    "GcsSettings",
    "LogSettings",
    "PostgresSettings",
    "RateLimitSettings",
    "S3Settings",
    "Secret",
    "Settings",
    "StorageKind",
    "StorageSettings",
    "WalSettings",
]

StorageKind = Literal["file", "s3", "gs"]
CompressionMethod = Literal["lz4", "lzma", "brotli", "none"]
DeltaOrigin = Literal["LATEST", "LATEST_FULL"]

PREFIX_VARIABLES: Final = ("WALG_FILE_PREFIX", "WALG_S3_PREFIX", "WALG_GS_PREFIX")
_EXTENSIONS: Final[dict[str, str]] = {"lz4": "lz4", "lzma": "lzma", "brotli": "br", "none": ""}
_LEVELNOS: Final[dict[str, int]] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must not be printed: ``repr`` and ``str`` show ``***``."""

    _value: str

    def reveal(self) -> str:
        """The secret itself, for handing to the library that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


def _endpoint(url: str | None, scheme: str) -> str:
    """An endpoint URL as identities compare it: without a trailing slash, and with the
    ``scheme`` the storage assumes when none is given (so ``host:9000`` and
    ``https://host:9000`` are one S3 endpoint)."""
    if not url:
        return ""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"{scheme}://{url}"


def _reveal(secret: Secret | None) -> str | None:
    return None if secret is None else secret.reveal()


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where backups live: a local directory, an S3 bucket or a GCS bucket.

    For ``file`` the bucket is empty and ``path`` is the directory; for ``s3`` and ``gs``
    ``path`` is the key prefix inside the bucket, without leading or trailing slashes.
    """

    kind: StorageKind
    bucket: str
    path: str
    variable: str  # the variable it was read from, e.g. WALE_S3_PREFIX
    prefix: str  # the value as given

    @property
    def url(self) -> str:
        """A normalized spelling: ``s3://bucket/path``, ``gs://bucket/path`` or the directory."""
        if self.kind == "file":
            return self.path
        return f"{self.kind}://{self.bucket}/{self.path}".rstrip("/")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """S3 (and S3-compatible) access; unset values are left to boto3's own defaults."""

    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    profile: str | None = None
    region: str | None = None
    endpoint: str | None = None
    force_path_style: bool = False
    storage_class: str = "STANDARD"
    sse: str | None = None
    sse_kms_id: str | None = None
    max_retries: int = 15


@dataclass(frozen=True, slots=True)
class GcsSettings:
    """Google Cloud Storage access."""

    credentials_file: str | None = None
    emulator_host: str | None = None


@dataclass(frozen=True, slots=True)
class ConcurrencySettings:
    """Worker counts of the pipeline stages; each is at least 1."""

    upload: int = 16
    download: int = 10
    upload_disk: int = 1
    chaining: bool = True  # WALG_PIPELINE_CHAINING: one-to-one stages share a process


@dataclass(frozen=True, slots=True)
class CompressionSettings:
    """How uploads are compressed."""

    method: CompressionMethod = "lz4"

    @property
    def extension(self) -> str:
        """The object name extension WAL-G uses: ``lz4``, ``lzma``, ``br``, or "" for none."""
        return _EXTENSIONS[self.method]


@dataclass(frozen=True, slots=True)
class CryptoSettings:
    """OpenPGP or libsodium encryption, chosen as WAL-G chooses (``ConfigureCrypter``): any
    OpenPGP setting wins, silently, over the libsodium ones. OpenPGP: the key, then the key
    file, then the key ID. libsodium: the key, then the key file."""

    pgp_key: Secret | None = None
    pgp_key_path: str | None = None
    pgp_key_passphrase: Secret | None = None
    gpg_key_id: Secret | None = None  # deprecated: a key in the local gpg keyring
    libsodium_key: Secret | None = None
    libsodium_key_path: str | None = None
    libsodium_key_transform: str = "none"  # none, base64 or hex

    @property
    def pgp(self) -> bool:
        """True when OpenPGP is configured (then it is used, whatever else is set)."""
        return any(v is not None for v in (self.pgp_key, self.pgp_key_path, self.gpg_key_id))

    @property
    def libsodium(self) -> bool:
        """True when libsodium is the crypter: a libsodium key is set and no OpenPGP one."""
        has_key = self.libsodium_key is not None or self.libsodium_key_path is not None
        return has_key and not self.pgp

    @property
    def enabled(self) -> bool:
        """True when uploads are to be encrypted (and downloads decrypted)."""
        return self.pgp or self.libsodium


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """backup-push and backup-fetch behaviour."""

    tar_size_threshold: int = 1073741823  # (1 << 30) - 1, as in WAL-G
    delta_max_steps: int = 0
    delta_origin: DeltaOrigin = "LATEST"
    sentinel_user_data_text: str | None = None
    delta_from_name: str | None = None  # WALG_DELTA_FROM_NAME: --delta-from-name's default
    delta_from_user_data: str | None = None  # WALG_DELTA_FROM_USER_DATA
    fetch_target_user_data: str | None = None  # WALG_FETCH_TARGET_USER_DATA
    verify_page_checksums: bool = False
    stop_backup_timeout: float = 0.0  # seconds; 0 = wait for archiving without limit
    replay_timeout: float = 1800.0  # seconds backup-verify --replay waits for consistency
    archive_check: bool = True  # the stop segment must be in this storage before the sentinel

    @property
    def sentinel_user_data(self) -> object:
        """UserData for the sentinel: the parsed JSON value, or the text if it is not JSON.

        Parsed on each access, so callers get their own copy and settings stay immutable.
        """
        if self.sentinel_user_data_text is None:
            return None
        return parse_json_or_text(self.sentinel_user_data_text)


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Caps in bytes per second; ``None`` means no cap."""

    disk: int | None = None
    network: int | None = None


@dataclass(frozen=True, slots=True)
class WalSettings:
    """wal-push and wal-fetch behaviour."""

    prevent_overwrite: bool = False
    background: bool = True  # WALG_WAL_BACKGROUND
    background_idle: float = 60.0  # WALG_WAL_BACKGROUND_IDLE, seconds
    daemon_upload_timeout: float = 60.0  # WALG_DAEMON_WAL_UPLOAD_TIMEOUT, seconds (0: none)
    integrity_max_delayed: int = 0  # WALG_INTEGRITY_MAX_DELAYED_WALS (wal-verify)
    check_content: bool = True  # WALG_WAL_CHECK_CONTENT: a WAL file's content fits its name


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Logging: ``level`` is a stdlib level name (DEBUG, INFO, WARNING, ERROR); ``format``
    is ``text`` or ``json``."""

    level: str = "INFO"
    debug_tracebacks: bool = False
    format: str = "text"
    """``text`` (WAL-G's lines) or ``json`` (WALG_LOG_FORMAT)."""

    @property
    def levelno(self) -> int:
        """The stdlib numeric level, e.g. ``logging.INFO`` (without importing logging)."""
        return _LEVELNOS[self.level]


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """libpq connection settings (all optional) and the data directory."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: Secret | None = None
    passfile: str | None = None
    database: str | None = None
    data_dir: str | None = None

    def dsn_params(self) -> dict[str, str]:
        """Keyword arguments for ``psycopg2.connect`` (libpq names), only those that are set.

        The password is revealed here: do not log the result.
        """
        params = {
            "host": self.host,
            "port": None if self.port is None else str(self.port),
            "user": self.user,
            "password": _reveal(self.password),
            "passfile": self.passfile,
            "dbname": self.database,
        }
        return {key: value for key, value in params.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything walg is configured with, read once by :func:`walg.config.load`."""

    storages: tuple[StorageSettings, ...] = ()
    s3: S3Settings = field(default_factory=S3Settings)
    gcs: GcsSettings = field(default_factory=GcsSettings)
    concurrency: ConcurrencySettings = field(default_factory=ConcurrencySettings)
    compression: CompressionSettings = field(default_factory=CompressionSettings)
    crypto: CryptoSettings = field(default_factory=CryptoSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    wal: WalSettings = field(default_factory=WalSettings)
    log: LogSettings = field(default_factory=LogSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    storage_retry_budget: float = 10.0  # WALG_STORAGE_RETRY_BUDGET, seconds (0: no limit)
    config_file: str | None = None
    unknown: tuple[str, ...] = ()  # WALG_*/WALE_* names given that neither walg nor WAL-G knows
    noted: tuple[str, ...] = ()  # WAL-G settings given that walg accepts but does not implement
    # The storage, crypto and tuning variables as given (not PG*), hidden from repr: what a
    # restore_command needs to run wal-fetch with the same configuration.
    given: tuple[tuple[str, Secret], ...] = ()

    def config_warnings(self) -> list[str]:
        """One line per unknown or not implemented setting, for the command to log once."""
        if not (self.unknown or self.noted):
            return []
        from walg.config.unsupported import warnings

        return warnings(self.unknown, self.noted)

    def storage_identity(self) -> str:
        """Where the configured storage is, in one line without credentials: the location
        and the endpoint it is reached at, e.g. ``s3://bucket/path (endpoint=AWS)`` or
        ``s3://bucket/path (endpoint=http://127.0.0.1:9000)``; for file storage the
        directory. Two configurations with the same identity store to the same place: the
        "uploaded ahead" markers and ``wal-g daemon`` compare it (ConfigError when no
        single storage is configured). Not part of it: the S3 region (a bucket name is
        global on AWS, the region only picks who answers; another service is another
        endpoint) and the AWS profile (credentials, which are not compared)."""
        storage = self.require_storage()
        if storage.kind == "file":
            return storage.path
        if storage.kind == "s3":
            parts = [f"endpoint={_endpoint(self.s3.endpoint, 'https') or 'AWS'}"]
        else:
            parts = [f"endpoint={_endpoint(self.gcs.emulator_host, 'http') or 'Google'}"]
        return f"{storage.url} ({' '.join(parts)})"

    def require_storage(self) -> StorageSettings:
        """The one configured storage; ConfigError if none or several are configured."""
        if len(self.storages) == 1:
            return self.storages[0]
        choices = ", ".join(PREFIX_VARIABLES)
        if not self.storages:
            raise ConfigError(
                f"no storage is configured: set one of {choices}",
                hint="e.g. WALG_S3_PREFIX=s3://my-bucket/walg or WALG_FILE_PREFIX=/backups "
                "(WALE_FILE_PREFIX, WALE_S3_PREFIX and WALE_GS_PREFIX are read too)",
            )
        given = ", ".join(s.variable for s in self.storages)
        raise ConfigError(
            f"several storages are configured ({given}); set only one of {choices}",
            hint="unset all but one of them (in the environment and in the --config file)",
        )
