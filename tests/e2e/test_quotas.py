"""Quotas held exactly across two broker processes on one Redis: a flooding key gets 429s
while another key's submits go through, and the Python client waits out a 429."""

from __future__ import annotations

import asyncio
import time

import httpx

from garage.client import AsyncClient
from garage.contract import KeyLimitsUpdate

from .conftest import ADMIN_HEADERS

CHAT = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "hi"}]},
    "wait_for_worker": True,
}


async def _user(url: str, name: str, **limits: int) -> tuple[str, str]:
    """A user key with `limits`: its id and secret."""
    async with AsyncClient(url, ADMIN_HEADERS["Authorization"].removeprefix("Bearer ")) as admin:
        created = await admin.create_key("user", name)
        await admin.set_key_limits(created.id, KeyLimitsUpdate(**limits))
    return created.id, created.key


async def test_two_brokers_hold_a_key_to_its_minute_while_another_key_submits(
    start_broker, redis_url: str, redis
) -> None:
    a = start_broker("--redis-url", redis_url, name="a")
    b = start_broker("--redis-url", redis_url, name="b")
    _, flood = await _user(a.url, "flood", requests_per_minute=6)
    _, calm = await _user(a.url, "calm")

    async with httpx.AsyncClient(timeout=30) as http:

        async def submit(url: str, key: str) -> int:
            reply = await http.post(
                f"{url}/v1/jobs", json=CHAT, headers={"Authorization": f"Bearer {key}"}
            )
            return reply.status_code

        flooding = [submit(url, flood) for url in (a.url, b.url) for _ in range(60)]
        calming = [submit(url, calm) for url in (a.url, b.url) for _ in range(5)]
        answers = await asyncio.gather(*flooding, *calming)
    flood_answers, calm_answers = answers[:120], answers[120:]
    # GCRA's burst is a minute's allowance; the run takes well under the 10 s in which
    # one more submit would be allowed, so exactly 6 pass.
    assert flood_answers.count(201) == 6 and flood_answers.count(429) == 114
    assert calm_answers == [201] * 10


async def test_the_client_waits_out_a_429_and_submits(start_broker) -> None:
    broker = start_broker()
    _, key = await _user(broker.url, "patient", requests_per_minute=120)
    async with AsyncClient(broker.url, key) as client:
        for _ in range(120):  # the minute's burst
            await client.submit("m", "hi", wait_for_worker=True)
        started = time.monotonic()
        handle = await client.submit("m", "one more", wait_for_worker=True)
        waited = time.monotonic() - started
    assert handle.id and 0.4 < waited < 5  # Retry-After: 1 (a submit every 0.5 s)
