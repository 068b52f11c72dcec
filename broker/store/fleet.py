"""The fleet view: each worker's last poll, kept while the worker is alive.

A worker entry is written by its poll and expires on its own when the worker goes quiet,
so the view needs no cleanup job. This is presence, not job state, so it is plain writes
in one pipeline rather than a Lua script.
"""

from __future__ import annotations

import time
from typing import Any

from garage.client.schemas import WorkerInfo

from ..clock import Clock
from . import keys

__all__ = ["FleetStore"]


class FleetStore:
    def __init__(self, redis: Any, clock: Clock, *, alive_ms: int) -> None:
        self._redis = redis
        self._clock = clock
        self.alive_ms = alive_ms
        self._served: tuple[float, dict[str, int]] = (float("-inf"), {})

    async def record_poll(self, info: WorkerInfo) -> None:
        if not set(info.models) <= self._served[1].keys():
            self._served = (float("-inf"), {})  # a model nobody served here until now
        now_ms = self._clock()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.worker(info.worker_id), info.model_dump_json(), px=self.alive_ms)
            pipe.zadd(keys.WORKERS, {info.worker_id: now_ms})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now_ms - self.alive_ms)
            await pipe.execute()

    async def live(self) -> list[WorkerInfo]:
        """Workers that polled within the liveness window, most recent first."""
        since = self._clock() - self.alive_ms
        ids = await self._redis.zrevrangebyscore(keys.WORKERS, "+inf", since)
        if not ids:
            return []
        rows = await self._redis.mget([keys.worker(worker_id) for worker_id in ids])
        return [WorkerInfo.model_validate_json(row) for row in rows if row]

    async def models(self, *, max_age_s: float = 0.0) -> dict[str, int]:
        """Each model served by a live worker that is not critical, with how many serve it.
        With `max_age_s`, an answer that old may be reused (submits ask on every call)."""
        read_at, counts = self._served
        if time.monotonic() - read_at <= max_age_s:
            return counts
        counts = {}
        for worker in await self.live():
            if worker.health.state == "critical":
                continue
            for model in worker.models:
                counts[model] = counts.get(model, 0) + 1
        self._served = (time.monotonic(), counts)
        return counts
