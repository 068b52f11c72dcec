"""The script channel (broker/store/script_channel.py) on a real redis-server: calls run
in the order they are made, a flushed script cache is recovered from, and a call whose
connection breaks fails instead of being sent again."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError

from garage.broker.store.script_channel import ScriptChannel

from ..netproxy import Proxy

APPEND = "redis.call('RPUSH', 'log', ARGV[1]) return redis.call('LLEN', 'log')"
FAIL = "return redis.error_reply('ERR on purpose')"


def sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


async def test_calls_run_in_the_order_they_are_made(redis_url: str, redis) -> None:
    channel = ScriptChannel(redis_url)
    try:
        # All written before any reply is awaited, the first while the channel connects.
        pending = [channel.call(sha(APPEND), APPEND, [str(i)]) for i in range(200)]
        assert await asyncio.gather(*pending) == list(range(1, 201))
        assert await redis.lrange("log", 0, -1) == [str(i) for i in range(200)]
    finally:
        await channel.aclose()


async def test_a_flushed_script_cache_is_loaded_again(redis_url: str, redis) -> None:
    channel = ScriptChannel(redis_url)
    try:
        assert await channel.call(sha(APPEND), APPEND, ["a"]) == 1
        await redis.script_flush()
        assert await channel.call(sha(APPEND), APPEND, ["b"]) == 2  # NOSCRIPT, then once
        assert await redis.lrange("log", 0, -1) == ["a", "b"]
    finally:
        await channel.aclose()


async def test_an_error_reply_fails_only_its_own_call(redis_url: str, redis) -> None:
    channel = ScriptChannel(redis_url)
    try:
        failing = channel.call(sha(FAIL), FAIL, [])
        fine = channel.call(sha(APPEND), APPEND, ["x"])
        with pytest.raises(ResponseError, match="on purpose"):
            await failing
        assert await fine == 1
    finally:
        await channel.aclose()


async def test_a_broken_connection_fails_waiting_calls_and_sends_nothing_again(
    redis_url: str, redis
) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with Proxy("127.0.0.1", port) as proxy:
        channel = ScriptChannel(f"redis://127.0.0.1:{proxy.port}/0")
        try:
            assert await channel.call(sha(APPEND), APPEND, ["before"]) == 1
            # The connection breaks while this one is under way: its reply never comes.
            busy = "local n = 0 for i = 1, 1e7 do n = n + 1 end " + APPEND
            waiting = channel.call(sha(busy), busy, ["cut off"])
            await asyncio.sleep(0.02)
            proxy.cut()
            with pytest.raises(ConnectionError):
                await waiting
            after = await channel.call(sha(APPEND), APPEND, ["after"])  # connects anew
            log = await redis.lrange("log", 0, -1)
            # The cut-off call may or may not have run, but never twice.
            assert log in (["before", "after"], ["before", "cut off", "after"])
            assert after == len(log)
        finally:
            await channel.aclose()


async def test_password_and_database_come_from_the_url(redis_url: str, redis) -> None:
    await redis.config_set("requirepass", "s3cret")
    try:
        base = redis_url.rsplit("/", 1)[0].replace("redis://", "redis://:s3cret@")
        channel = ScriptChannel(f"{base}/5")
        try:
            assert await channel.call(sha(APPEND), APPEND, ["in five"]) == 1
        finally:
            await channel.aclose()
        other = aioredis.Redis.from_url(f"{base}/5", decode_responses=True)
        assert await other.lrange("log", 0, -1) == ["in five"]
        await other.flushdb()
        await other.config_set("requirepass", "")
        await other.aclose()
    finally:
        plain = aioredis.Redis.from_url(redis_url.replace("redis://", "redis://:s3cret@"))
        await plain.config_set("requirepass", "")
        await plain.aclose()
    wrong = ScriptChannel(redis_url.rsplit("/", 1)[0].replace("redis://", "redis://:no@") + "/0")
    with pytest.raises(ConnectionError):
        await wrong.call(sha(APPEND), APPEND, ["x"])
    await wrong.aclose()


async def test_a_new_connection_loads_every_script_first_so_calls_keep_their_order(
    redis_url: str, redis
) -> None:
    other = APPEND + " -- another script"
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with Proxy("127.0.0.1", port) as proxy:
        channel = ScriptChannel(f"redis://127.0.0.1:{proxy.port}/0")
        channel.register(sha(APPEND), APPEND)
        channel.register(sha(other), other)
        try:
            assert await channel.call(sha(APPEND), APPEND, ["start"]) == 1
            proxy.cut()
            await redis.script_flush()  # as after a Redis restart: no script is known
            await redis.delete("log")
            # Calls across both scripts, some written while the channel reconnects, some
            # while replies come back; without the loading first, a call whose NOSCRIPT
            # came back would be re-sent behind calls made after it.
            pending = []
            for i in range(200):
                script = (APPEND, other)[i % 2]
                pending.append(asyncio.ensure_future(channel.call(sha(script), script, [str(i)])))
                if i >= 100:
                    await asyncio.sleep(0)
            await asyncio.gather(*pending)
            assert await redis.lrange("log", 0, -1) == [str(i) for i in range(200)]
        finally:
            await channel.aclose()
