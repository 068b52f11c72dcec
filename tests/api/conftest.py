"""HTTP tests against the session's in-thread broker (`live_broker` in tests/conftest.py),
on a Redis flushed before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from ..conftest import ADMIN_KEY, LiveBroker
from ..support import ManualClock


@pytest.fixture
def broker(live_broker: LiveBroker, redis: aioredis.Redis) -> LiveBroker:
    """The shared server, on a Redis the `redis` fixture has just flushed."""
    return live_broker


@pytest.fixture
async def http(broker: LiveBroker) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=broker.url, timeout=30) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(ADMIN_KEY)


async def new_key(
    http: httpx.AsyncClient, role: str, name: str = "t", **limits: int
) -> dict[str, str]:
    """A new key's Authorization header; `limits` (requests_per_minute=..., 0: none) are
    set on it."""
    response = await http.post("/v1/admin/keys", json={"role": role, "name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    if limits:
        key_id = response.json()["id"]
        put = await http.put(f"/v1/admin/keys/{key_id}/limits", json=limits, headers=ADMIN)
        assert put.status_code == 200, put.text
    return bearer(response.json()["key"])


@pytest.fixture
async def user(http: httpx.AsyncClient) -> dict[str, str]:
    return await new_key(http, "user", "alice")


@pytest.fixture
async def worker(http: httpx.AsyncClient) -> dict[str, str]:
    return await new_key(http, "worker", "rig-1")


# No worker polls in most of these tests, so interactive jobs must be told to queue anyway.
CHAT = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "hi"}]},
    "wait_for_worker": True,
}


def poll_body(models=("m",), slots: int = 1, wait_s: float = 0, worker_id: str = "w1") -> dict:
    return {
        "worker_id": worker_id,
        "models": list(models),
        "slots_free": slots,
        "slots_total": max(slots, 1),
        "wait_s": wait_s,
    }


@pytest.fixture
def clock(broker: LiveBroker) -> ManualClock:
    """The broker's own clock, so the test-side `store` fixture shares its time."""
    return broker.clock
