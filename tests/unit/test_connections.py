"""The broker's Redis connections: hiredis packs the bytes redis-py would have sent, and a
new connection loads every script."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from garage.broker.store.connections import GarageConnection, connection_class, connection_pool

COMMANDS = [
    ("EVALSHA", "5952cb68cfad44e29c1acea883ea8b8a84a42b46", 0, "job_01K", "k_1", 3, 1.5, ""),
    ("HSET", "garage:job:x", "text", "naïve ☃ " * 2000, b"\x00\xffraw", -7),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETINFO", b"LIB-NAME", "garage"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_packed_bytes_are_redis_pys(command: tuple) -> None:
    ours = connection_class("redis://127.0.0.1:6380/0")
    assert ours is not None and issubclass(ours, Connection)
    assert b"".join(ours().pack_command(*command)) == b"".join(Connection().pack_command(*command))


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://127.0.0.1:6380/0", Connection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///tmp/garage-redis.sock?db=0", UnixDomainSocketConnection),
    ],
)
def test_the_pool_makes_these_connections_for_every_scheme(url: str, transport: type) -> None:
    """redis-py's from_url replaces the class it is given for unix:// and rediss://."""
    pool = connection_pool(url, decode_responses=True)
    made = pool.make_connection()
    assert isinstance(made, GarageConnection) and isinstance(made, transport)


def test_each_scheme_keeps_its_transport_and_bad_input_is_redis_pys_error() -> None:
    unix = connection_class("unix:///tmp/redis.sock?db=0")
    assert unix is not None and issubclass(unix, UnixDomainSocketConnection)
    assert connection_class("memcache://x") is None
    with pytest.raises(DataError):
        connection_class("redis://x")().pack_command("SET", "k", None)


async def test_a_new_connection_loads_every_script(redis_url: str) -> None:
    import hashlib

    import redis.asyncio as aioredis

    from garage.broker.store.scripts import NAMES, source

    plain = aioredis.Redis.from_url(redis_url)
    await plain.script_flush()
    pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=connection_class(redis_url))
    ours = aioredis.Redis(connection_pool=pool)
    assert await ours.ping()
    shas = [hashlib.sha1(source(name).encode()).hexdigest() for name in NAMES]
    assert await plain.script_exists(*shas) == [True] * len(NAMES)
    await ours.aclose()
    await plain.aclose()
