"""How full Redis is, so new work is refused (507) before Redis refuses writes.

garage's Redis must run with `maxmemory-policy noeviction` (the embedded one does): an
evicting policy would drop queued jobs silently. With a `maxmemory`, Redis refuses every
script that writes once it is reached, and that would also stop running jobs from
reporting their results. So the broker reads Redis's memory once a second and, past
`full_at` of `maxmemory`, refuses new jobs, batches and files, while the work already in
the store runs on in the room left below `maxmemory`. Room comes back as finished jobs
pass their retention (`retention_s`), or when `maxmemory` is raised. A Redis with no
`maxmemory` is never full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .outage import STORE_DOWN

__all__ = ["StoreCapacity"]

logger = logging.getLogger(__name__)


class StoreCapacity:
    def __init__(self, redis: Any, *, full_at: float = 0.9) -> None:
        self._redis = redis
        self.full_at = full_at
        self.used_bytes = 0
        self.max_bytes = 0  # Redis's maxmemory; 0: none
        self.full = False

    async def refresh(self) -> None:
        info = await self._redis.info("memory")
        self.used_bytes = int(info.get("used_memory", 0))
        self.max_bytes = int(info.get("maxmemory", 0))
        full = bool(self.max_bytes) and self.used_bytes >= self.full_at * self.max_bytes
        if full != self.full:
            log = logger.warning if full else logger.info
            log(
                "store.full" if full else "store.room",
                extra={"used_mb": self.used_bytes >> 20, "max_mb": self.max_bytes >> 20},
            )
        self.full = full

    async def watch(self, interval_s: float = 1.0) -> None:
        """Refreshes every `interval_s` for ever; a Redis outage leaves the last reading."""
        while True:
            with contextlib.suppress(*STORE_DOWN):  # the request path reports an outage
                await self.refresh()
            await asyncio.sleep(interval_s)

    def describe(self) -> str:
        return f"{self.used_bytes / 2**20:.0f} MB used of {self.max_bytes / 2**20:.0f} MB"
