"""The round-trip loop, as `roundtrip.latency` runs it for garage: a 2 ms pause before each
job (the worker parks its poll again), `warmup` untimed jobs, then up to `rounds` timed
ones, stopping early once `budget_s` seconds have gone by since the loop began."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["async_rounds", "rounds"]

PAUSE_S = 0.002


def rounds(one: Callable[[], object], count: int, *, warmup: int, budget_s: float) -> list[float]:
    """Milliseconds of each timed call of `one` (a job submitted and its result read)."""
    samples = []
    deadline = time.monotonic() + budget_s
    for i in range(count + warmup):
        if i > warmup and time.monotonic() > deadline:
            break
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        one()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed * 1000)
    return samples


async def async_rounds(
    one: Callable[[], Awaitable[object]], count: int, *, warmup: int, budget_s: float
) -> list[float]:
    samples = []
    deadline = time.monotonic() + budget_s
    for i in range(count + warmup):
        if i > warmup and time.monotonic() > deadline:
            break
        await asyncio.sleep(PAUSE_S)
        start = time.perf_counter()
        await one()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed * 1000)
    return samples
