"""The batch finalizer loop: every broker process runs it; `claim_batch.lua` hands each
finished batch to one of them at a time to write its output and error files."""

from __future__ import annotations

import asyncio
import logging
import random

from .store import STORE_DOWN, Store, honour_cancellation

__all__ = ["run_finalizer"]

logger = logging.getLogger(__name__)


async def run_finalizer(store: Store, *, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s * random.uniform(0.5, 1.5))
        try:
            while (batch_id := await store.batches.claim_finished()) is not None:
                honour_cancellation()
                await store.batches.finalize(batch_id)
            honour_cancellation()
        except Exception as exc:  # a Redis hiccup must not end the loop; the claim expires
            down = isinstance(exc, STORE_DOWN)  # expected: one line, no traceback
            logger.warning("finalizer.error", exc_info=not down, extra={"error": str(exc)})
