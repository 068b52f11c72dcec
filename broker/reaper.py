"""The reaper loop: every broker process runs it; `reap.lua` makes concurrent passes safe."""

from __future__ import annotations

import asyncio
import logging
import random

from .store import STORE_DOWN, Store, honour_cancellation

__all__ = ["run_reaper"]

logger = logging.getLogger(__name__)

_BATCH = 500


async def run_reaper(store: Store, *, interval_s: float) -> None:
    while True:
        # Jitter spreads the passes of many replicas over the interval.
        await asyncio.sleep(interval_s * random.uniform(0.5, 1.5))
        try:
            while True:
                counts = await store.leases.reap(limit=_BATCH)
                honour_cancellation()
                if max(counts.requeued + counts.failed, counts.expired) < _BATCH:
                    break
        except Exception as exc:  # a Redis hiccup must not end the loop; the next pass retries
            down = isinstance(exc, STORE_DOWN)  # expected: one line, no traceback
            logger.warning("reaper.error", exc_info=not down, extra={"error": str(exc)})
