"""A token bucket shared by every worker process (WALG_DISK_RATE_LIMIT, _NETWORK_...).

Create it in the parent before the workers fork and hand it to them through the
pipeline's ``shared`` objects (it cannot be pickled, only inherited: see
walg.stages.throttle); each ``take(n)`` waits until ``n`` bytes fit the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``rate`` bytes per second across all processes, with bursts of ``burst``."""

    def __init__(
        self,
        ctx: Any,
        rate: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = float(rate)
        # WAL-G allows a burst of 8 x 8 KiB; we also allow one 1 MiB chunk so that a
        # single take() of a chunk never waits longer than its own transfer time.
        self.burst = float(burst if burst is not None else max(rate // 10, 1 << 20))
        self._state = ctx.RawArray("d", [self.burst, clock()])  # tokens, last refill
        self._lock = ctx.Lock()
        self._clock = clock
        self._sleep = sleep

    def take(self, nbytes: int) -> None:
        """Account for ``nbytes``; sleep as long as needed to stay within the rate."""
        with self._lock:
            now = self._clock()
            tokens = min(self.burst, self._state[0] + (now - self._state[1]) * self.rate)
            tokens -= nbytes
            self._state[0] = tokens
            self._state[1] = now
        if tokens < 0:
            self._sleep(-tokens / self.rate)
