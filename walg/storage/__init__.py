"""Storage backends behind one interface (:class:`Storage`).

Only the interface and :func:`open_storage` are imported here; a backend's module, and the
SDK it needs (boto3, google-cloud-storage), are imported when that backend is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walg.storage.base import Listing, ObjectInfo, RetryPolicy, Storage
from walg.storage.extras import require_extra

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["Listing", "ObjectInfo", "RetryPolicy", "Storage", "open_storage"]


def open_storage(settings: Settings) -> Storage:
    """The storage the settings name (exactly one of WALG_FILE/S3/GS_PREFIX)."""
    where = settings.require_storage()
    require_extra(where.kind)  # the cloud SDKs are pip extras: say which one is missing
    if where.kind == "file":
        from walg.storage.file import FileStorage

        return FileStorage(where.path)
    budget = settings.storage_retry_budget
    if where.kind == "s3":
        from walg.storage.s3 import S3Storage

        retry = RetryPolicy(max_retries=settings.s3.max_retries, budget=budget)
        return S3Storage.from_settings(where, settings.s3, settings.concurrency.upload, retry)
    from walg.storage.gcs import GcsStorage

    # WAL-G's GCS default of 16 retries: an unreachable GCS is bounded by the budget
    return GcsStorage.from_settings(where, settings.gcs, RetryPolicy(16, budget=budget))
