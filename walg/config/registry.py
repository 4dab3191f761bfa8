"""Every setting walg reads, as data: name, fallbacks, kind, default and a one-line description.

:func:`walg.config.load` reads settings only through this table, and :func:`markdown_table`
renders it for the README, so the documentation cannot drift from the code. Regenerate
``docs/configuration.md`` with ``python -m walg.config > docs/configuration.md``.

Names and defaults are WAL-G's (``internal/config/config.go``, ``pkg/storages/s3``). A
fallback is read only when the name itself is unset, in the order given, as WAL-G's
``GetWaleCompatibleSetting`` does for ``WALG_X`` then ``WALE_X``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["GROUPS", "KNOWN_NAMES", "VARIABLES", "Kind", "Var", "markdown_table", "variable"]

Kind = Literal[
    "text", "path", "secret", "bool", "int", "size", "rate", "choice", "loglevel", "json", "prefix",
    "duration",
]


@dataclass(frozen=True, slots=True)
class Var:
    """One supported variable."""

    name: str
    group: str
    kind: Kind
    description: str
    default: str | None = None
    fallbacks: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The name, then its fallbacks, in lookup order."""
        return (self.name, *self.fallbacks)


GROUPS: Final = (
    "storage", "s3", "gcs", "concurrency", "compression", "crypto",
    "backup", "rate limits", "wal", "logging", "postgres",
)

VARIABLES: Final[tuple[Var, ...]] = (
    # storage: exactly one prefix when a command needs storage
    Var("WALG_FILE_PREFIX", "storage", "prefix",
        "Local directory to store backups in, e.g. /mnt/backup/walg.",
        fallbacks=("WALE_FILE_PREFIX",)),
    Var("WALG_S3_PREFIX", "storage", "prefix",
        "S3 location s3://bucket/path to store backups in.", fallbacks=("WALE_S3_PREFIX",)),
    Var("WALG_GS_PREFIX", "storage", "prefix",
        "Google Cloud Storage location gs://bucket/path to store backups in.",
        fallbacks=("WALE_GS_PREFIX",)),
    Var("WALG_STORAGE_RETRY_BUDGET", "storage", "duration",
        "How long one S3 or GCS request keeps retrying while the storage cannot be reached "
        "(connection refused or timed out, name not resolved), and the most a connection "
        "attempt waits; then the command fails. Errors the service answers (5xx, throttling) "
        "are retried WALG_S3_MAX_RETRIES times whatever this says. 0: no time limit. walg "
        "only.", default="10s"),
    # s3
    Var("AWS_ACCESS_KEY_ID", "s3", "secret", "S3 access key ID.", fallbacks=("AWS_ACCESS_KEY",)),
    Var("AWS_SECRET_ACCESS_KEY", "s3", "secret", "S3 secret access key.",
        fallbacks=("AWS_SECRET_KEY",)),
    Var("AWS_SESSION_TOKEN", "s3", "secret", "Session token for temporary S3 credentials.",
        fallbacks=("AWS_SECURITY_TOKEN",)),
    Var("AWS_PROFILE", "s3", "text", "Profile to use from the AWS shared credentials files."),
    Var("AWS_REGION", "s3", "text", "Region of the bucket, e.g. us-east-1.",
        fallbacks=("AWS_DEFAULT_REGION",)),
    Var("AWS_ENDPOINT", "s3", "text",
        "URL of an S3-compatible service, e.g. http://127.0.0.1:9000.",
        fallbacks=("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
    Var("AWS_S3_FORCE_PATH_STYLE", "s3", "bool",
        "Address buckets as endpoint/bucket/key (needed by many S3-compatible services).",
        default="false"),
    Var("WALG_S3_STORAGE_CLASS", "s3", "text",
        "Storage class of uploaded objects, e.g. STANDARD_IA.", default="STANDARD",
        fallbacks=("WALE_S3_STORAGE_CLASS", "S3_STORAGE_CLASS")),
    Var("WALG_S3_SSE", "s3", "text", "Server-side encryption algorithm: AES256 or aws:kms.",
        fallbacks=("WALE_S3_SSE", "S3_SSE")),
    Var("WALG_S3_SSE_KMS_ID", "s3", "text", "KMS key ID for WALG_S3_SSE=aws:kms.",
        fallbacks=("WALE_S3_SSE_KMS_ID", "S3_SSE_KMS_ID")),
    Var("WALG_S3_MAX_RETRIES", "s3", "int", "How many times a failed S3 request is retried.",
        default="15", fallbacks=("WALE_S3_MAX_RETRIES", "S3_MAX_RETRIES"), minimum=0),
    # gcs
    Var("GOOGLE_APPLICATION_CREDENTIALS", "gcs", "path",
        "Service account JSON key file; unset to use the default credentials."),
    Var("STORAGE_EMULATOR_HOST", "gcs", "text",
        "GCS emulator URL, e.g. http://127.0.0.1:9023 (tests only)."),
    # concurrency
    Var("WALG_UPLOAD_CONCURRENCY", "concurrency", "int",
        "Uploads in flight at once. backup-push: parts in flight (as many as the cores "
        "compress, at least WALG_UPLOAD_DISK_CONCURRENCY) times S3 multipart threads per "
        "part stays within it; wal-push: the file plus up to N-1 ready segments ahead.",
        default="16", minimum=1),
    Var("WALG_DOWNLOAD_CONCURRENCY", "concurrency", "int",
        "Downloads in flight at once: backup-fetch objects (at most one per core), "
        "segments wal-fetch prefetches, documents listings read at once.",
        default="10", minimum=1),
    Var("WALG_UPLOAD_DISK_CONCURRENCY", "concurrency", "int",
        "Processes reading PGDATA at the same moment during backup-push.",
        default="1", minimum=1),
    Var("WALG_PIPELINE_CHAINING", "concurrency", "bool",
        "backup-push, backup-fetch and backup-verify run the stages of one part (read, "
        "compress, encrypt, upload) in one process per part in flight; false: a process "
        "per stage and worker, joined by shared-memory channels (for diagnosis and "
        "benchmarks).",
        default="true"),
    # compression
    Var("WALG_COMPRESSION_METHOD", "compression", "choice",
        "Compression of uploaded files (none: stored as they are, with no extension, as "
        "WAL-G's none writes them).", default="lz4",
        choices=("lz4", "lzma", "brotli", "none")),
    # crypto
    Var("WALG_PGP_KEY", "crypto", "secret",
        "Armored OpenPGP key: public to encrypt, private to decrypt."),
    Var("WALG_PGP_KEY_PATH", "crypto", "path", "File holding the armored OpenPGP key."),
    Var("WALG_PGP_KEY_PASSPHRASE", "crypto", "secret", "Passphrase of the private key."),
    Var("WALG_GPG_KEY_ID", "crypto", "secret",
        "Deprecated: ID of a key in the local gpg keyring.", fallbacks=("WALE_GPG_KEY_ID",)),
    Var("WALG_LIBSODIUM_KEY", "crypto", "secret",
        "libsodium secretstream key (as WAL-G): encrypts and decrypts. Any OpenPGP setting "
        "wins over it."),
    Var("WALG_LIBSODIUM_KEY_PATH", "crypto", "path",
        "File holding the libsodium key (surrounding whitespace ignored); "
        "WALG_LIBSODIUM_KEY wins over it."),
    Var("WALG_LIBSODIUM_KEY_TRANSFORM", "crypto", "choice",
        "How the libsodium key becomes 32 bytes: `hex` or `base64` decode exactly 32 bytes; "
        "`none` takes the text itself (at least 25 bytes, zero-padded or cut to 32).",
        default="none", choices=("none", "base64", "hex")),
    # backup
    Var("WALG_TAR_SIZE_THRESHOLD", "backup", "size",
        "Size at which backup-push starts a new tar part.", default="1073741823", minimum=1),
    Var("WALG_DELTA_MAX_STEPS", "backup", "int",
        "Delta backups allowed between two full backups; 0 makes every backup full.",
        default="0", minimum=0),
    Var("WALG_DELTA_ORIGIN", "backup", "choice",
        "Base of a delta backup: the latest backup, or the latest full one.",
        default="LATEST", choices=("LATEST", "LATEST_FULL")),
    Var("WALG_SENTINEL_USER_DATA", "backup", "json",
        "Stored in the backup's sentinel as UserData: JSON if it parses, else the text."),
    Var("WALG_DELTA_FROM_NAME", "backup", "text",
        "backup-push: base a delta on this backup, as --delta-from-name (the flag wins; "
        "--full ignores it)."),
    Var("WALG_DELTA_FROM_USER_DATA", "backup", "json",
        "backup-push: base a delta on the one backup with this UserData, as "
        "--delta-from-user-data (the flag wins; --full ignores it)."),
    Var("WALG_FETCH_TARGET_USER_DATA", "backup", "json",
        "backup-fetch: restore the one backup with this UserData, as --target-user-data "
        "(the flag wins; with a backup name too, an error as in WAL-G)."),
    Var("WALG_VERIFY_PAGE_CHECKSUMS", "backup", "bool",
        "Verify page checksums while reading PGDATA.", default="false"),
    Var("WALG_STOP_BACKUP_TIMEOUT", "backup", "duration",
        "How long backup-push waits at pg_backup_stop for the backup's WAL to be archived "
        "(statement_timeout of the call, as in WAL-G); 0 waits without limit on a primary "
        "(WAL-G's default) but 5m on a standby, which waits for the primary to archive the "
        "stop segment (a quiet primary with archive_timeout=0 may never do it).", default="0"),
    Var("WALG_REPLAY_TIMEOUT", "backup", "duration",
        "How long backup-verify --replay waits for the throwaway server to reach a "
        "consistent state before it stops the server and fails; 0 waits without limit.",
        default="30m"),
    Var("WALG_ARCHIVE_CHECK", "backup", "bool",
        "backup-push commits only once the backup's stop segment is in this storage's "
        "wal_005/; false when WAL is archived elsewhere (restore then needs that archive).",
        default="true"),
    # rate limits
    Var("WALG_DISK_RATE_LIMIT", "rate limits", "rate",
        "Cap on reading PGDATA, in bytes per second; unset for no cap."),
    Var("WALG_NETWORK_RATE_LIMIT", "rate limits", "rate",
        "Cap on uploads, in bytes per second; unset for no cap."),
    # wal
    Var("WALG_PREVENT_WAL_OVERWRITE", "wal", "bool",
        "wal-push fails instead of overwriting a stored segment with different content.",
        default="false"),
    Var("WALG_WAL_BACKGROUND", "wal", "bool",
        "wal-push and wal-fetch start a background process per cluster (in "
        "pg_wal/walg_data) that stays warm, uploads ready segments and prefetches ahead; "
        "false: every call works alone.",
        default="true"),
    Var("WALG_WAL_BACKGROUND_IDLE", "wal", "duration",
        "How long that background process waits for work before it exits.",
        default="60s"),
    Var("WALG_WAL_CHECK_CONTENT", "wal", "bool",
        "wal-push and wal-fetch refuse a WAL file whose content does not fit its name (a "
        "segment's size and first page header, a history or backup file's text). false: "
        "store and restore files unread, as WAL-G does; only for synthetic files in tests "
        "(a damaged segment then reaches the archive, or the server). walg only.",
        default="true"),
    Var("WALG_INTEGRITY_MAX_DELAYED_WALS", "wal", "int",
        "wal-verify integrity: how many missing segments just before the newest archived "
        "one count as MISSING_DELAYED (not yet handed to archive_command) and not lost.",
        default="0", minimum=0),
    Var("WALG_DAEMON_SOCKET", "wal", "path",
        "Unix socket of a running `wal-g daemon`: wal-push and wal-fetch hand their work "
        "to it (running directly when no daemon listens)."),
    Var("WALG_DAEMON_WAL_UPLOAD_TIMEOUT", "wal", "duration",
        "`wal-g daemon`: time limit on each wal-push it serves; past it the upload is "
        "cancelled (nothing stored) and the push fails. 0: no limit.",
        default="60s"),
    # logging
    Var("WALG_LOG_LEVEL", "logging", "loglevel",
        "NORMAL, DEVEL (debug output and tracebacks) or ERROR; DEBUG, INFO, WARNING too.",
        default="NORMAL",
        choices=("NORMAL", "DEVEL", "ERROR", "DEBUG", "INFO", "WARNING")),
    Var("WALG_LOG_FORMAT", "logging", "choice",
        "How log lines look: text, WAL-G's `INFO: 2026/12/06 20:00:00.123456 message "
        "key=value` lines (local time), or json, one JSON object per line (for log "
        "collectors). walg only; WAL-G always writes text.",
        default="text", choices=("text", "json")),
    # postgres
    Var("PGHOST", "postgres", "text", "Host name or socket directory of PostgreSQL."),
    Var("PGPORT", "postgres", "int", "Port of PostgreSQL.", minimum=1, maximum=65535),
    Var("PGUSER", "postgres", "text", "User to connect as."),
    Var("PGPASSWORD", "postgres", "secret", "Password to connect with."),
    Var("PGPASSFILE", "postgres", "path", "Password file to use instead of ~/.pgpass."),
    Var("PGDATABASE", "postgres", "text", "Database to connect to."),
    Var("PGDATA", "postgres", "path", "Data directory, when a command is not given one."),
)

_BY_NAME: Final = {var.name: var for var in VARIABLES}
KNOWN_NAMES: Final = frozenset(name for var in VARIABLES for name in var.names)


def variable(name: str) -> Var:
    """The registry entry called ``name`` (not a fallback); KeyError if there is none."""
    return _BY_NAME[name]


_KIND_LABELS: Final[dict[str, str]] = {
    "text": "text",
    "path": "path",
    "secret": "secret",
    "bool": "bool",
    "size": "size",
    "rate": "rate (bytes/s)",
    "json": "JSON or text",
    "loglevel": "log level",
    "duration": "duration",
}


def _kind_label(var: Var) -> str:
    if var.kind == "prefix":
        return "path" if var.name == "WALG_FILE_PREFIX" else "URL"
    if var.kind == "choice":
        return "one of " + ", ".join(f"`{c}`" for c in var.choices)
    if var.kind == "int":
        low, high = var.minimum, var.maximum
        if low is not None and high is not None:
            return f"int {low}..{high}"
        return f"int >= {low}" if low is not None else "int"
    return _KIND_LABELS[var.kind]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


_FORMATS: Final = """
Value formats:
- Exactly one of `WALG_FILE_PREFIX`, `WALG_S3_PREFIX`, `WALG_GS_PREFIX` must be set for
  commands that use storage.
- A fallback ("also read") is used only when the variable itself is unset. An empty value
  counts as unset.
- bool: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (and `t`/`f`), in any case.
- duration: Go syntax, as in WAL-G: a number with a unit `ns`, `us`, `ms`, `s`, `m`, `h`
  (`30s`, `5m`, `1h30m`, `1.5h`, `500ms`); a bare `0` is zero.
- size and rate: a byte count, or a number with a unit `K`, `M`, `G`, `T`: every unit is
  a power of 1024 however it is spelt (`64M` = `64MB` = `64MiB` = 67108864), as in WAL-G;
  decimals are allowed (`1.5G`). A rate may end in `/s`.
- The `--config` file (JSON, YAML or TOML, by its extension) maps the same names to
  strings, numbers or booleans; the environment overrides it name by name.
"""


def markdown_table() -> str:
    """The README's configuration table (plus a note on value formats), in Markdown."""
    lines = [
        "| Variable | Also read | Type | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for group in GROUPS:
        for var in (v for v in VARIABLES if v.group == group):
            also = ", ".join(f"`{name}`" for name in var.fallbacks)
            default = f"`{var.default}`" if var.default is not None else ""
            cells = (f"`{var.name}`", also, _kind_label(var), default, var.description)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n" + _FORMATS
