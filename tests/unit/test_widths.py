"""Each concurrency setting has one meaning, and every width derives from it in one place
(walg.config.widths)."""

from __future__ import annotations

import pytest

from walg.config.settings import ConcurrencySettings
from walg.config.widths import (
    ahead_uploads,
    fetch_width,
    listing_threads,
    prefetch_count,
    push_widths,
)


@pytest.mark.parametrize(
    ("upload", "disk", "parts", "cpus", "in_flight", "threads"),
    [
        (16, 1, 100, 2, 2, 8),  # the cores bound the parts in flight; N split among them
        (16, 1, 100, 32, 16, 1),  # N bounds them on a big host
        (16, 4, 100, 2, 4, 4),  # R readers are tar workers: never fewer than R
        (16, 1, 1, 8, 1, 16),  # one part: one worker with every upload stream
        (3, 1, 100, 8, 3, 1),
        (1, 1, 100, 8, 1, 1),
    ],
)
def test_push_widths(
    upload: int, disk: int, parts: int, cpus: int, in_flight: int, threads: int
) -> None:
    """Parts in flight: what the cores compress (up to N), at least R, at most the parts;
    each upload worker gets N divided among them as multipart threads (at least 1)."""
    widths = push_widths(ConcurrencySettings(upload=upload, upload_disk=disk), parts, cpus)
    assert (widths.parts_in_flight, widths.multipart_threads) == (in_flight, threads)
    assert widths.disk_readers == disk
    assert widths.parts_in_flight * widths.multipart_threads <= max(upload, in_flight)


def test_download_concurrency_bounds_every_download() -> None:
    """WALG_DOWNLOAD_CONCURRENCY bounds backup-fetch's objects in flight (also by cores and
    objects), wal-fetch's prefetch and the documents read at once by listings."""
    concurrency = ConcurrencySettings(download=6)
    assert fetch_width(concurrency, objects=100, cpus=32) == 6
    assert fetch_width(concurrency, objects=100, cpus=2) == 2
    assert fetch_width(concurrency, objects=1, cpus=32) == 1
    assert prefetch_count(concurrency) == listing_threads(concurrency) == 6


def test_upload_concurrency_counts_wal_push_with_its_uploads_ahead() -> None:
    """wal-push uploads the file itself plus up to N-1 ready segments ahead: N in all."""
    assert ahead_uploads(ConcurrencySettings(upload=16)) == 15
    assert ahead_uploads(ConcurrencySettings(upload=1)) == 0
