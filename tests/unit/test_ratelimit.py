"""The shared token bucket keeps the average rate, across processes."""

from __future__ import annotations

import time

import multiprocess
import pytest

from walg.ratelimit import RateLimiter

CTX = multiprocess.get_context("fork")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_is_kept_with_a_fake_clock() -> None:
    """Taking 10 MB at 1 MB/s with a 1 MiB burst takes about 9 seconds of sleep."""
    clock = FakeClock()
    limiter = RateLimiter(CTX, 1_000_000, burst=1 << 20, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        limiter.take(100_000)
    assert 8.9 < clock.now < 9.1


def test_two_processes_share_one_budget() -> None:
    """Two processes each taking 1.5 MB at a shared 10 MB/s need about 0.2 s in all."""
    limiter = RateLimiter(CTX, 10_000_000, burst=100_000)

    def work() -> None:
        for _ in range(15):
            limiter.take(100_000)

    started = time.monotonic()
    procs = [CTX.Process(target=work) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.25


def test_rate_must_be_positive() -> None:
    """A zero rate is a programming error (settings treat unset as no limit)."""
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(CTX, 0)
