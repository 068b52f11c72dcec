"""The pub/sub subscriber stops when cancelled, wherever the cancellation lands.

redis-py 8.0 and 8.1 lose a cancellation that arrives while a connection is being opened
(pyproject.toml pins redis below 8); a broker stopped early then hung in its shutdown.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

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
