"""The command channel: one connection, commands written in call order, each reply given
to its own call, whatever happens to the calls or to the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError

from garage.broker.store import Store
from garage.broker.store.command_channel import CommandChannel
from garage.broker.store.connections import connection_pool
from garage.broker.store.scripts import Scripts

from ..support import ManualClock


@pytest.fixture
async def pool(redis_url: str, redis: aioredis.Redis) -> AsyncIterator[Any]:
    pool = connection_pool(redis_url, decode_responses=True)
    yield pool
    await pool.aclose()


@pytest.fixture
async def channel(pool: aioredis.ConnectionPool) -> AsyncIterator[CommandChannel]:
    channel = CommandChannel(pool)
    yield channel
    await channel.aclose()


async def test_calls_run_in_call_order_and_get_their_own_replies(channel) -> None:
    # Made before the connection is up: written in order once it is.
    first = [channel.send("RPUSH", "order", i) for i in range(50)]
    assert await asyncio.gather(*first) == list(range(1, 51))
    echoes = await asyncio.gather(*(channel.send("ECHO", f"call {i}") for i in range(200)))
    assert echoes == [f"call {i}" for i in range(200)]
    assert await channel.send("LRANGE", "order", 0, -1) == [str(i) for i in range(50)]


async def test_an_error_reply_fails_only_its_own_call(channel) -> None:
    before = channel.send("SET", "k", "v")
    wrong = channel.send("INCR", "k")  # not an integer
    after = channel.send("GET", "k")
    assert await before == "OK"
    with pytest.raises(ResponseError, match="not an integer"):
        await wrong
    assert await after == "v"


async def test_a_cancelled_call_leaves_the_replies_in_step(channel) -> None:
    slow = channel.send("BLPOP", "never-pushed", 0.3)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow, 0.05)
    assert await channel.send("ECHO", "next") == "next"  # not the BLPOP's reply


async def test_a_lost_connection_fails_waiting_calls_and_the_next_call_reconnects(
    channel, redis: aioredis.Redis
) -> None:
    own_id = await channel.send("CLIENT", "ID")
    waiting = channel.send("BLPOP", "never-pushed", 5)
    await asyncio.sleep(0.05)
    await redis.client_kill_filter(_id=own_id)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiting, 2)
    assert await channel.send("ECHO", "again") == "again"
    assert await channel.send("CLIENT", "ID") != own_id


async def test_a_failed_connect_fails_the_queued_calls_and_a_later_call_retries(
    redis_url: str, redis: aioredis.Redis
) -> None:
    unused = connection_pool("redis://127.0.0.1:1/0")
    channel = CommandChannel(unused)
    try:
        with pytest.raises(ConnectionError):
            await channel.send("PING")
        with pytest.raises(ConnectionError):  # tried again, not stuck on the first failure
            await channel.send("PING")
    finally:
        await channel.aclose()
        await unused.aclose()


async def test_closing_fails_waiting_calls_and_refuses_new_ones(pool) -> None:
    channel = CommandChannel(pool)
    assert await channel.send("PING") == "PONG"
    waiting = channel.send("BLPOP", "never-pushed", 5)
    await asyncio.sleep(0.05)
    await channel.aclose()
    with pytest.raises(ConnectionError):
        await waiting
    with pytest.raises(ConnectionError, match="closed"):
        channel.send("PING")


async def test_a_script_call_survives_a_flushed_script_cache(
    channel, pool, redis: aioredis.Redis
) -> None:
    scripts = Scripts(aioredis.Redis(connection_pool=pool), channel)
    assert scripts.in_order
    assert await scripts.watch(args=["no-such-job", "p1"]) is None
    await redis.script_flush()
    assert await scripts.watch(args=["no-such-job", "p1"]) is None


async def test_the_store_sends_its_scripts_over_the_channel(
    redis_url: str, redis: aioredis.Redis
) -> None:
    store = Store.connect(
        redis_url, ManualClock(), lease_ms=30_000, retention_ms=60_000, worker_alive_ms=60_000
    )
    try:
        assert store.channel is not None
        own_id = await store.channel.send("CLIENT", "ID")
        assert await _last_command(redis, own_id) == "client"
        await store.leases.claim(worker_id="w", lease_owner="k", models=["m"], slots=1)
        assert await _last_command(redis, own_id) == "evalsha"
    finally:
        await store.aclose()


async def _last_command(redis: aioredis.Redis, client_id: int) -> str:
    """The last command the connection with `client_id` sent, as Redis lists it."""
    [entry] = [c for c in await redis.client_list() if int(c["id"]) == client_id]
    return entry["cmd"].split("|")[0]
