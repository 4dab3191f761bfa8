"""Retries of transient storage failures: how many, how long apart, and for how long.

A retryable :class:`~walg.errors.StorageError` is tried again after a capped exponential
backoff with full jitter, up to ``max_retries`` times (WALG_S3_MAX_RETRIES on S3). When no
connection can be made at all (:class:`~walg.errors.StorageUnreachable`: refused, timed
out, name not resolved) a call also stops once ``budget`` seconds have passed since it
started (WALG_STORAGE_RETRY_BUDGET), so a storage that is down fails an archive_command
in seconds. Failures the service answers (5xx, throttling) or a connection cut mid-way
keep the whole count: the service is there, and a long backup should ride them out.

An error a retry loop gave up on is marked ``exhausted``, so a loop around that one (a
put around a resumable upload, a listing around a page) raises it at once instead of
multiplying the tries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from walg.errors import StorageError, StorageUnreachable
from walg.logs import get_logger

__all__ = ["DEFAULT_BUDGET", "RetryPolicy", "Tries"]

DEFAULT_BUDGET = 10.0
"""Seconds one call keeps retrying an unreachable storage (WALG_STORAGE_RETRY_BUDGET)."""

T = TypeVar("T")
_log = get_logger("walg.storage")


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter for retryable storage errors.

    Attempt ``n`` (from 0) waits a random time in ``[0, min(max_delay, base_delay * 2**n)]``.
    ``budget`` (seconds, 0 for none) bounds a call's retries while the storage is
    unreachable; see the module docstring.
    """

    max_retries: int = 5
    base_delay: float = 0.1
    max_delay: float = 10.0
    budget: float = DEFAULT_BUDGET
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def delay(self, attempt: int) -> float:
        import random  # only when a retry waits: not on every wal-push

        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def connect_timeout(self, default: float) -> float:
        """The connect timeout of one request: ``default``, but not above the budget (a
        connection that times out must leave the budget room to say so)."""
        return min(default, self.budget) if self.budget > 0 else default

    def timeouts(self, pair: tuple[float, float]) -> tuple[float, float]:
        """A ``(connect, read)`` timeout pair with the connect timeout within the budget."""
        return self.connect_timeout(pair[0]), pair[1]

    def tries(self) -> Tries:
        """A fresh count of failures for one call, whose budget starts now."""
        return Tries(self, self.clock())

    def call(self, what: str, operation: Callable[[], T]) -> T:
        """Run ``operation``, retrying it while it raises a retryable error."""
        del what  # the errors name the operation and the object themselves
        tries = self.tries()
        while True:
            try:
                return operation()
            except StorageError as err:
                tries.failed(err)


class Tries:
    """The failures of one call so far: :meth:`failed` raises, or waits before the next
    try. After :meth:`progress` (a read or a listing that moved on) the count starts over
    and the budget starts at the next failure."""

    def __init__(self, policy: RetryPolicy, started: float | None = None) -> None:
        self.policy = policy
        self.count = 0
        self.started = started

    def progress(self) -> None:
        self.count = 0
        self.started = None

    def failed(self, err: StorageError) -> None:
        """Raise ``err`` unless it may be retried now; else log and wait the backoff."""
        policy = self.policy
        if self.started is None:
            self.started = policy.clock()
        if not err.retryable or getattr(err, "exhausted", False):
            raise err
        if self.count >= policy.max_retries:
            raise _gave_up(err, self, "")
        pause = policy.delay(self.count)
        if isinstance(err, StorageUnreachable) and policy.budget > 0:
            left = policy.budget - (policy.clock() - self.started)
            if left <= policy.base_delay:  # no time left for another try
                raise _gave_up(err, self, f" (WALG_STORAGE_RETRY_BUDGET={policy.budget:g}s)")
            pause = min(pause, left - policy.base_delay)  # the last try still within it
        self.count += 1
        _log.warning(f"{err.msg}; retrying ({self.count + 1}/{policy.max_retries + 1})")
        policy.sleep(pause)


def _gave_up(err: StorageError, tries: Tries, why: str) -> StorageError:
    """``err``, marked as given up on, its message saying after how many tries."""
    spent = tries.policy.clock() - (tries.started or 0.0)
    if tries.count:
        err.msg = f"{err.msg}; gave up after {tries.count + 1} tries in {spent:.1f}s{why}"
        err.args = (err.msg,)
    err.exhausted = True  # type: ignore[attr-defined]
    return err
