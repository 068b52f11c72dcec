"""The fleet view: each worker's last poll, kept while the worker is alive.

A worker entry is written by its poll and expires on its own when the worker goes quiet,
so the view needs no cleanup job. An entry belongs to the worker key that wrote it: while
it lives, another key's poll with the same worker id is refused (`FleetRefused`), and a key
may have at most `max_per_key` live workers, so no key can overwrite another's rig or
fill the view. This is presence, not job state, so it is a watched transaction (the
entry and the key's set of workers) rather than a Lua script.

A busy worker polls after every job; a poll that changes nothing but its free slots
rewrites the entry at most once a `refresh_s`, which keeps Redis round trips off most
polls. Such a poll is deferred instead: if it is still waiting when the write falls due
(it parked, nothing to lease), `write_deferred` writes it then, as of the poll, so the
view's load figures lag by at most `refresh_s`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from garage.contract import WorkerInfo

from ..clock import Clock
from . import keys

__all__ = ["DeferredPoll", "FleetRefused", "FleetStore"]

_WRITTEN_MAX = 10_000  # workers whose last write this process remembers


def _same_but_load(a: WorkerInfo, b: WorkerInfo) -> bool:
    """Whether two polls of a worker differ at most in free slots and time."""
    return (
        a.models == b.models
        and a.health == b.health
        and a.gpus == b.gpus
        and a.gpu_limits == b.gpu_limits
        and a.slots_total == b.slots_total
        and a.name == b.name
        and a.owner == b.owner
        and a.backend == b.backend
        and a.version == b.version
        and a.fallback_after_s == b.fallback_after_s
    )


class FleetRefused(Exception):
    """A poll's entry was not written: `reason` "taken" (another worker key's live worker
    has the id) or "too_many" (the key has its most live workers)."""

    def __init__(self, reason: str, worker_id: str, most: int) -> None:
        self.reason, self.worker_id, self.most = reason, worker_id, most
        super().__init__(f"{reason}: {worker_id}")


@dataclass(slots=True, eq=False)
class DeferredPoll:
    """A poll not written yet, and from when (`time.monotonic()`) it is due."""

    info: WorkerInfo
    seen_ms: int  # the broker's clock at the poll
    due: float


class FleetStore:
    def __init__(
        self,
        redis: Any,
        clock: Clock,
        *,
        alive_ms: int,
        refresh_s: float = 1.0,
        max_per_key: int = 0,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self.alive_ms = alive_ms
        self.max_per_key = max_per_key  # live workers a worker key may have; 0: no limit
        self._refresh_s = refresh_s
        self._served: tuple[float, dict[str, int]] = (float("-inf"), {})
        self._written: dict[str, tuple[float, WorkerInfo]] = {}  # worker id -> last write
        self._deferred: dict[str, DeferredPoll] = {}  # worker id -> its latest deferred poll

    async def record_poll(self, info: WorkerInfo, *, defer: bool = True) -> DeferredPoll | None:
        """Writes the worker's entry, or (with `defer`) defers a poll that changes only its
        free slots within `refresh_s` of the last write; a deferred poll is for
        `write_deferred`. Raises FleetRefused when the entry is not the poller's to write."""
        if not set(info.models) <= self._served[1].keys():
            self._served = (float("-inf"), {})  # a model nobody served here until now
        now = time.monotonic()
        last = self._written.get(info.worker_id)
        if (
            defer
            and last is not None
            and now - last[0] < self._refresh_s
            and _same_but_load(last[1], info)  # the same owner too: it wrote that entry
        ):
            deferred = DeferredPoll(info, self._clock(), last[0] + self._refresh_s)
            self._deferred[info.worker_id] = deferred
            return deferred
        self._deferred.pop(info.worker_id, None)
        await self._write(info, self._clock(), self.alive_ms)
        self._remember(info, now)
        return None

    async def write_deferred(self, deferred: DeferredPoll) -> None:
        """Writes a deferred poll, unless a later poll of its worker came since. It is
        written as of the poll: liveness counts from the poll, as if written then."""
        worker_id = deferred.info.worker_id
        if self._deferred.get(worker_id) is not deferred:
            return
        del self._deferred[worker_id]
        alive_ms = self.alive_ms - (self._clock() - deferred.seen_ms)
        if alive_ms <= 0:
            return
        try:
            await self._write(deferred.info, deferred.seen_ms, alive_ms)
        except FleetRefused:
            return  # its poll was written as the poller's before; the next poll says why
        self._remember(deferred.info, time.monotonic())

    def _remember(self, info: WorkerInfo, now: float) -> None:
        if len(self._written) >= _WRITTEN_MAX:
            self._written.clear()
            self._deferred.clear()
        self._written[info.worker_id] = (now, info)

    async def _write(self, info: WorkerInfo, seen_ms: int, alive_ms: int) -> None:
        entry, mine = keys.worker(info.worker_id), keys.owner_workers(info.owner)
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(entry, mine)
                cutoff = self._clock() - self.alive_ms
                holder = await pipe.get(entry)
                if holder is not None and _owner(holder) != info.owner:
                    seen = await pipe.zscore(keys.WORKERS, info.worker_id)
                    if seen is not None and seen > cutoff:  # still live by this clock
                        raise FleetRefused("taken", info.worker_id, self.max_per_key)
                if self.max_per_key and await pipe.zscore(mine, info.worker_id) is None:
                    live = await pipe.zcount(mine, f"({cutoff}", "+inf")
                    if live >= self.max_per_key:
                        raise FleetRefused("too_many", info.worker_id, self.max_per_key)
                pipe.multi()
                pipe.set(entry, info.model_dump_json(), px=alive_ms)
                pipe.zadd(keys.WORKERS, {info.worker_id: seen_ms})
                pipe.zremrangebyscore(keys.WORKERS, "-inf", cutoff)
                pipe.zadd(mine, {info.worker_id: seen_ms})
                pipe.zremrangebyscore(mine, "-inf", cutoff)
                pipe.pexpire(mine, self.alive_ms)
                try:
                    await pipe.execute()
                    return
                except WatchError:
                    continue  # another broker wrote the entry meanwhile: look again

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


def _owner(entry: str) -> str | None:
    """The worker key id an entry was written for."""
    try:
        return json.loads(entry).get("owner")
    except ValueError:
        return None
