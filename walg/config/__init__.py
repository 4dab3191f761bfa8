"""Typed, frozen settings read once from the environment and an optional JSON config file.

``load(os.environ, config_file)`` is the only reader of the environment in walg; every
other module is handed a :class:`Settings` (or one of its parts). The variables, their
WAL-G names, fallbacks and defaults are listed in :mod:`walg.config.registry`.
"""

from walg.config.loader import find_default_config_file, load, read_config_file
from walg.config.registry import markdown_table
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
    "find_default_config_file",
    "load",
    "markdown_table",
    "read_config_file",
]
