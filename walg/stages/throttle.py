"""The limits stages share across processes: concurrent disk readers, disk and network rates.

These are process primitives (a multiprocess Semaphore, :class:`~walg.ratelimit.RateLimiter`'s
shared array and lock), made in the parent before a run. They cannot be pickled into a stage
spec (``Graph.validate`` pickles every factory, and such primitives refuse to be pickled:
they may only be inherited), so they travel as the run's ``shared`` object, which the forked
workers inherit. One typed :class:`Throttles` under one key, read with :meth:`Throttles.of`:
a stage cannot misspell a limit and silently run without it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from walg.pipeline import WorkerContext

__all__ = ["Limiter", "Throttles"]


class Limiter(Protocol):
    """A rate: ``take(n)`` waits until ``n`` more bytes fit (see walg.ratelimit)."""

    def take(self, nbytes: int) -> None: ...


@dataclass(frozen=True)
class Throttles:
    """``disk_readers``: a semaphore held while reading PGDATA; ``disk_rate`` and
    ``network_rate``: byte rates for reading PGDATA and for uploads. None: no limit."""

    disk_readers: AbstractContextManager[Any] | None = None
    disk_rate: Limiter | None = None
    network_rate: Limiter | None = None

    KEY: ClassVar[str] = "walg.stages.throttle.Throttles"

    @classmethod
    def create(
        cls,
        readers: int | None = None,
        disk_rate: int | None = None,
        network_rate: int | None = None,
    ) -> Throttles:
        """Make the primitives (in the parent, before the run forks its workers)."""
        import multiprocess

        from walg.ratelimit import RateLimiter

        ctx = multiprocess.get_context("fork")
        return cls(
            ctx.Semaphore(readers) if readers else None,
            RateLimiter(ctx, disk_rate) if disk_rate else None,
            RateLimiter(ctx, network_rate) if network_rate else None,
        )

    def shared(self) -> dict[str, Any]:
        """The ``shared`` argument of a runtime's ``run`` that hands these to every worker."""
        return {self.KEY: self}

    @classmethod
    def of(cls, ctx: WorkerContext) -> Throttles:
        """The throttles of this run; no limits when the run was given none."""
        found = ctx.shared.get(cls.KEY)
        if found is None:
            return cls()
        if not isinstance(found, cls):
            raise TypeError(f"ctx.shared[{cls.KEY!r}] holds a {type(found).__name__}")
        return found
