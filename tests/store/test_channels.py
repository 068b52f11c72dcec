"""The broker's Redis loops stop when cancelled, wherever the cancellation lands.

redis-py 8.0 and 8.1 lose a cancellation that arrives while a connection is being opened
(`broker/store/cancellation.py`); without the guard, a broker stopped early hung in its
shutdown.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from garage.broker.clock import system_clock
from garage.broker.finalizer import run_finalizer
from garage.broker.reaper import run_reaper
from garage.broker.store import Store
from garage.broker.store.channels import Subscriber


async def test_cancelled_while_connecting_or_reading_it_stops(redis_url: str) -> None:
    stuck = []
    for step in range(40):  # 0 to 4 ms after the start: connect, subscribe, read
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        run = asyncio.create_task(Subscriber(client, lambda channel, data: None).run())
        await asyncio.sleep(step / 10_000)
        run.cancel()
        done, _ = await asyncio.wait({run}, timeout=2)
        if not done:
            stuck.append(step)
            run.cancel()
        await client.aclose()
    assert not stuck, f"still running after a cancel at steps {stuck} (of 0.1 ms)"


async def test_the_reaper_and_finalizer_loops_stop_when_cancelled(redis_url: str) -> None:
    """The same quirk would keep a loop that calls Redis over and over running for ever."""
    stuck = []
    for step in range(100):
        store = Store.connect(
            redis_url, system_clock, lease_ms=1000, retention_ms=1000, worker_alive_ms=1000
        )
        loops = [
            asyncio.create_task(run_reaper(store, interval_s=0.0001)),
            asyncio.create_task(run_finalizer(store, interval_s=0.0001)),
        ]
        await asyncio.sleep(step / 10_000)
        for loop in loops:
            loop.cancel()
        _, pending = await asyncio.wait(loops, timeout=2)
        if pending:
            stuck.append(step)
            for loop in pending:
                loop.cancel()
        await store.aclose()
    assert not stuck, f"still running after a cancel at steps {stuck} (of 0.1 ms)"
