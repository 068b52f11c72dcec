"""The broker app under a real uvicorn server on loopback, in a thread of this process.

One server per test session on the session's redis-server, flushed before each test. The
broker's clock is a `ManualClock` the tests move to expire leases and deadlines.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from garage.broker.app import build_app
from garage.broker.settings import BrokerSettings
from garage.broker.store import Store

from ..support import ManualClock, free_port, wait_until

ADMIN_KEY = "test-admin-key"


@dataclass
class LiveBroker:
    url: str
    clock: ManualClock
    store: Store
    app: object


@pytest.fixture(scope="session")
def live_broker(redis_url: str) -> Iterator[LiveBroker]:
    clock = ManualClock()
    settings = BrokerSettings(
        redis_url=redis_url,
        admin_key=ADMIN_KEY,
        max_body_bytes=64 * 1024,
        reap_interval_s=3600,  # tests reap by hand
        key_cache_s=0,
    )
    store = Store.on(
        aioredis.Redis.from_url(redis_url, decode_responses=True),
        clock,
        lease_ms=settings.lease_ms,
        retention_ms=settings.retention_ms,
        worker_alive_ms=settings.worker_alive_ms,
    )
    app = build_app(settings, store=store, clock=clock)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout_s=20, what="uvicorn to start")
    yield LiveBroker(url=f"http://127.0.0.1:{port}", clock=clock, store=store, app=app)
    server.should_exit = True
    thread.join(timeout=10)


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


async def new_key(http: httpx.AsyncClient, role: str, name: str = "t") -> dict[str, str]:
    response = await http.post("/v1/admin/keys", json={"role": role, "name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return bearer(response.json()["key"])


@pytest.fixture
async def user(http: httpx.AsyncClient) -> dict[str, str]:
    return await new_key(http, "user", "alice")


@pytest.fixture
async def worker(http: httpx.AsyncClient) -> dict[str, str]:
    return await new_key(http, "worker", "rig-1")


CHAT = {"model": "m", "request": {"messages": [{"role": "user", "content": "hi"}]}}


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
