"""The cloud SDKs are pip extras (``walg[s3]``, ``walg[gcs]``, ``walg[all]``): a storage whose
SDK is not installed is refused before anything is read or written, with one line naming
the extra to install.

Checked with :func:`importlib.util.find_spec`, which finds a module without running it, so the
check costs no SDK import (the backend imports its SDK when it is opened, or later).
"""

from __future__ import annotations

from walg.errors import ConfigError

__all__ = ["EXTRAS", "missing_module", "require_extra"]

#: For each storage kind: its name for people, the pip extra that installs its SDK, and the
#: modules that extra provides (module, its pip package).
EXTRAS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "s3": ("S3", "s3", (("boto3", "boto3"), ("botocore", "botocore"))),
    "gs": ("GCS", "gcs", (("google.cloud.storage", "google-cloud-storage"),
                          ("google.resumable_media", "google-resumable-media"))),
}


def missing_module(modules: tuple[tuple[str, str], ...]) -> str | None:
    """The pip package of the first of ``modules`` that is not installed, else None."""
    import importlib.util  # here: file storage (wal-push's usual case) never pays for it

    for name, package in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return package
        except ModuleNotFoundError:  # a parent package (google.cloud) is missing
            return package
    return None


def require_extra(kind: str) -> None:
    """Raise :class:`ConfigError` (exit 2) when storage ``kind``'s SDK is not installed."""
    if kind not in EXTRAS:
        return
    storage, extra, modules = EXTRAS[kind]
    package = missing_module(modules)
    if package is None:
        return
    raise ConfigError(
        f"{storage} storage needs the {package} package, which is not installed "
        f"(walg was installed without its [{extra}] extra)",
        hint=f"pip install 'walg[{extra}]' (or 'walg[all]') into the environment wal-g runs "
        "from; see README.md, \"Running walg in production\"",
    )
