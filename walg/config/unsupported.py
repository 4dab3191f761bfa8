"""WAL-G settings that walg does not implement, as data, and what walg does when one is set.

Names come from WAL-G's own lists (``internal/config/config.go``: the common and PostgreSQL
``AllowedSettings``; ``pkg/storages/s3`` and ``pkg/storages/gcs`` ``SettingList``, which
WAL-G reads as ``WALG_X``, ``WALE_X`` or ``X``). Each entry says what walg does:

- ``refuse``: the setting changes where or how data is stored (encryption, another storage
  backend, object lock, which backup a delta is based on...). Ignoring it would store data
  differently from what the user asked for, so every command stops with a ConfigError
  (exit 2) naming it, until walg implements it.
- ``note``: walg runs without it, but the user may rely on what it does (a log file,
  metrics): one warning line says it has no effect.
- ``ignore``: tuning or another database's setting; walg's behaviour already covers it.

A value listed in ``harmless`` (compared case-insensitively) is WAL-G's default: setting it
changes nothing, so it is accepted whatever the treatment.

Any other ``WALG_*``/``WALE_*`` name is unknown: WAL-G warns about it ("X is unknown"), and
so does walg, with the closest known name as a hint (a typo such as
``WALG_UPLOAD_CONCURENCY`` otherwise goes unnoticed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from walg.config.registry import KNOWN_NAMES
from walg.errors import ConfigError

__all__ = [
    "OUTSIDE_REGISTRY",
    "UNSUPPORTED",
    "Treatment",
    "Unsupported",
    "check_supported",
    "noted",
    "unknown",
    "warnings",
]

Treatment = Literal["refuse", "note", "ignore"]


@dataclass(frozen=True, slots=True)
class Unsupported:
    """WAL-G settings walg does not implement: the names, what they do, and walg's answer."""

    names: tuple[str, ...]
    feature: str  # what WAL-G does with them, e.g. "Azure Blob Storage"
    treatment: Treatment
    hint: str = ""  # for refuse: what to do instead
    harmless: tuple[str, ...] = ()  # values that change nothing (WAL-G's defaults)

    def applies(self, value: str) -> bool:
        """Whether ``value`` makes this setting matter (it is not one of the harmless ones)."""
        return value.strip().lower() not in self.harmless


def _adapter(name: str) -> tuple[str, str, str]:
    """WAL-G reads a storage setting ``X`` (S3_SSE_C, GCS_ENCRYPTION_KEY) as WALG_X, WALE_X
    or X."""
    return f"WALG_{name}", f"WALE_{name}", name


def _adapters(*names: str) -> tuple[str, ...]:
    return tuple(alias for name in names for alias in _adapter(name))


def _prefix(kind: str) -> tuple[str, str]:
    return f"WALG_{kind}_PREFIX", f"WALE_{kind}_PREFIX"


_PGP = ("encrypt with OpenPGP (WALG_PGP_KEY or WALG_PGP_KEY_PATH) or libsodium "
        "(WALG_LIBSODIUM_KEY or WALG_LIBSODIUM_KEY_PATH) instead, or keep using WAL-G")
_BACKENDS = "use WALG_S3_PREFIX, WALG_GS_PREFIX or WALG_FILE_PREFIX, or keep using WAL-G"
_FALSE: Final = ("false", "f", "0")
_TRUE: Final = ("true", "t", "1")

UNSUPPORTED: Final[tuple[Unsupported, ...]] = (
    # --- how data is stored: encryption ---
    Unsupported(("WALG_CSE_KMS_ID", "WALG_CSE_KMS_REGION"),
                "client-side encryption with AWS KMS", "refuse", _PGP),
    Unsupported(("YC_CSE_KMS_KEY_ID",), "client-side encryption with Yandex Cloud KMS",
                "refuse", _PGP),
    Unsupported(("WALG_ENVELOPE_PGP_KEY", "WALG_ENVELOPE_PGP_KEY_PATH",
                 "WALG_ENVELOPE_PGP_YC_CSE_KMS_KEY_ID",
                 "WALG_ENVELOPE_PGP_YC_SERVICE_ACCOUNT_KEY_FILE", "WALG_ENVELOPE_PGP_YC_ENDPOINT"),
                "envelope OpenPGP encryption", "refuse", _PGP),
    Unsupported(("WALG_ENVELOPE_CACHE_EXPIRATION",), "envelope OpenPGP encryption", "refuse",
                _PGP, harmless=("0",)),
    Unsupported(_adapter("S3_SSE_C"), "S3 server-side encryption with a customer key (SSE-C)",
                "refuse", "use WALG_S3_SSE=aws:kms with WALG_S3_SSE_KMS_ID, or WALG_S3_SSE=AES256"),
    Unsupported(_adapter("GCS_ENCRYPTION_KEY"),
                "GCS customer-supplied encryption keys", "refuse", _PGP),
    # --- where data is stored ---
    Unsupported(_prefix("AZ"), "Azure Blob Storage", "refuse", _BACKENDS),
    Unsupported(_prefix("SWIFT"), "OpenStack Swift storage", "refuse", _BACKENDS),
    Unsupported(_prefix("OSS"), "Alibaba Cloud OSS storage", "refuse", _BACKENDS),
    Unsupported(_prefix("SSH"), "SSH (SFTP) storage", "refuse", _BACKENDS),
    Unsupported(("WALG_STORAGE_PREFIX",), "a sub-folder inside the storage", "refuse",
                "append the sub-folder to the storage prefix itself, "
                "e.g. WALG_S3_PREFIX=s3://bucket/path/sub-folder"),
    Unsupported(("WALG_FAILOVER_STORAGES", "WALG_FAILOVER_STORAGES_CHECK",
                 "WALG_FAILOVER_STORAGES_CHECK_TIMEOUT", "WALG_FAILOVER_STORAGES_CHECK_SIZE",
                 "WALG_FAILOVER_STORAGES_CACHE_LIFETIME",
                 "WALG_FAILOVER_STORAGES_CACHE_EMA_ALIVE_LIMIT",
                 "WALG_FAILOVER_STORAGES_CACHE_EMA_DEAD_LIMIT",
                 "WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_ALIVE_MAX",
                 "WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_ALIVE_MIN",
                 "WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_DEAD_MAX",
                 "WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_DEAD_MIN"),
                "failover storages", "refuse", "configure one storage, or keep using WAL-G"),
    Unsupported(("WALG_TARGET_STORAGE",), "failover storages", "refuse",
                "configure one storage, or keep using WAL-G", harmless=("default",)),
    Unsupported(_adapter("S3_ENDPOINT_SOURCE"), "an S3 endpoint taken from a source URL", "refuse",
                "put the endpoint URL in AWS_ENDPOINT, e.g. AWS_ENDPOINT=https://host:9000"),
    Unsupported(_adapter("S3_CA_CERT_FILE"), "a custom CA certificate for S3", "refuse",
                "set AWS_CA_BUNDLE to the same file (boto3 reads it)"),
    Unsupported(_adapter("S3_REQUEST_ADDITIONAL_HEADERS"), "extra headers on S3 requests", "refuse",
                "unset it; walg sends storage class and encryption from WALG_S3_STORAGE_CLASS "
                "and WALG_S3_SSE"),
    Unsupported(_adapter("S3_RETENTION_PERIOD"), "S3 object lock retention", "refuse",
                "set a default retention on the bucket instead", harmless=("-1",)),
    Unsupported(_adapter("S3_RETENTION_MODE"), "S3 object lock retention", "refuse",
                "set a default retention on the bucket instead"),
    Unsupported(_adapter("GCS_NORMALIZE_PREFIX"), "WAL-E style GCS prefixes", "refuse",
                "unset it (walg normalizes the prefix, as WAL-G does by default)",
                harmless=_TRUE),
    # --- what is stored, and from which backup ---
    Unsupported(("WALG_ZSTD_LEVEL",), "zstd compression", "refuse",
                "unset it; WALG_COMPRESSION_METHOD may be lz4, lzma or brotli"),
    Unsupported(("WALG_UPLOAD_WAL_METADATA",), "WAL metadata files", "refuse",
                "unset it (or set it to NOMETADATA)", harmless=("nometadata",)),
    # --- accepted, but the user may rely on what it does ---
    Unsupported(("WALG_LOG_DESTINATION",), "logging to a file (walg logs to stderr)", "note",
                harmless=("stderr",)),
    Unsupported(("WALG_STATSD_ADDRESS", "WALG_STATSD_EXTRA_TAGS"), "statsd metrics", "note"),
    Unsupported(("WALG_USE_WAL_DELTA", "WALG_FORCE_WAL_DELTA"),
                "delta maps built from WAL (walg reads pages)", "note", harmless=_FALSE),
    Unsupported(("WALG_PREFETCH_DIR",), "a separate WAL prefetch directory", "note"),
    Unsupported(_adapter("S3_USE_LIST_OBJECTS_V1"), "S3 ListObjects version 1", "note",
                harmless=_FALSE),
    Unsupported(_adapter("S3_ENABLE_VERSIONING"), "deleting every version in versioned buckets",
                "note", harmless=_FALSE),
    Unsupported(_adapter("S3_USE_YC_SESSION_TOKEN"), "Yandex Cloud session tokens", "note",
                harmless=_FALSE),
    # --- tuning, or covered by what walg does anyway ---
    Unsupported(("WALG_UPLOAD_QUEUE", "WALG_DOWNLOAD_FILE_RETRIES", "WALG_TAR_DISABLE_FSYNC",
                 "WALG_USE_REVERSE_UNPACK", "WALG_SKIP_REDUNDANT_TARS",
                 "WALG_STORE_ALL_CORRUPT_BLOCKS", "WALG_USE_RATING_COMPOSER",
                 "WALG_USE_COPY_COMPOSER", "WALG_USE_DATABASE_COMPOSER",
                 "WALG_WITHOUT_FILES_METADATA", "WALG_SERIALIZER_TYPE",
                 "WALG_STREAM_CREATE_COMMAND", "WALG_STREAM_RESTORE_COMMAND", "WALG_DIRECT_IO",
                 "WALG_DIRECT_IO_BLOCK_COUNT", "WALG_SLOTNAME", "WALG_PG_WAL_SIZE",
                 "WALG_PG_WAL_PAGE_SIZE", "WALG_PG_BLOCK_SIZE", "WALG_ALIVE_CHECK_INTERVAL",
                 "WALG_DISABLE_PARTIAL_RESTORE", "WALG_AZURE_BUFFER_SIZE",
                 "WALG_AZURE_MAX_BUFFERS"),
                "tuning", "ignore"),
    Unsupported(_adapters("S3_MAX_PART_SIZE", "S3_LOG_LEVEL", "S3_RANGE_BATCH_ENABLED",
                          "S3_RANGE_MAX_RETRIES", "S3_SKIP_VALIDATION",
                          "S3_MIN_THROTTLING_RETRY_DELAY", "S3_MAX_THROTTLING_RETRY_DELAY",
                          "S3_DISABLE_100_CONTINUE", "S3_DELETE_BATCH_SIZE", "S3_ENDPOINT_PORT",
                          "S3_ENDPOINT_PROTOCOL", "GCS_CONTEXT_TIMEOUT", "GCS_MAX_CHUNK_SIZE",
                          "GCS_MAX_RETRIES"),
                "tuning", "ignore"),
)

OUTSIDE_REGISTRY: Final = frozenset({"WALG_CONFIG_PATH"})
"""Names walg reads before the settings exist (the config file's path), so not in the registry."""

_BY_NAME: Final = {name: entry for entry in UNSUPPORTED for name in entry.names}
_ALL_KNOWN: Final = KNOWN_NAMES | _BY_NAME.keys() | OUTSIDE_REGISTRY


def _present(values: Mapping[str, str], treatment: Treatment) -> list[tuple[str, Unsupported]]:
    """``(name, entry)`` for each name in ``values`` whose entry has ``treatment`` and whose
    value is not harmless, in table order; a name the registry knows is never unsupported."""
    found = []
    for entry in UNSUPPORTED:
        if entry.treatment != treatment:
            continue
        found += [
            (name, entry)
            for name in entry.names
            if name in values and name not in KNOWN_NAMES and entry.applies(values[name])
        ]
    return found


def check_supported(values: Mapping[str, str]) -> None:
    """ConfigError (exit 2) naming every setting in ``values`` that walg would have to refuse."""
    refused = _present(values, "refuse")
    if not refused:
        return
    names = ", ".join(name for name, _ in refused)
    features = " or ".join(dict.fromkeys(entry.feature for _, entry in refused))
    first_name, first = refused[0]
    verb, them = ("is", "it") if len(refused) == 1 else ("are", "them")
    raise ConfigError(
        f"{names} {verb} set, but walg does not implement {features} yet, and ignoring {them} "
        "would store data differently than asked",
        hint=f"unset {first_name} and {first.hint}",
    )


def noted(values: Mapping[str, str]) -> tuple[str, ...]:
    """The names in ``values`` that walg accepts but that have no effect worth a warning."""
    return tuple(name for name, _ in _present(values, "note"))


def unknown(names: Iterable[str]) -> tuple[str, ...]:
    """The WALG_*/WALE_* names that neither walg nor WAL-G knows, sorted."""
    prefixed = (name for name in names if name.startswith(("WALG_", "WALE_")))
    return tuple(sorted(name for name in prefixed if name not in _ALL_KNOWN))


def _closest(name: str) -> str | None:
    import difflib  # only when a name is unknown: not on every wal-push

    matches = difflib.get_close_matches(name, sorted(_ALL_KNOWN), n=1, cutoff=0.8)
    return matches[0] if matches else None


def warnings(unknown_names: Iterable[str], noted_names: Iterable[str]) -> list[str]:
    """One warning line per unknown or noted name."""
    lines = []
    for name in unknown_names:
        closest = _closest(name)
        guess = f" (did you mean {closest}?)" if closest else ""
        lines.append(f"{name} is unknown: walg and WAL-G do not read it{guess}")
    for name in noted_names:
        feature = _BY_NAME[name].feature
        lines.append(f"{name} has no effect: walg does not implement {feature}")
    return lines
