"""The one pub/sub connection each broker process holds.

Scripts publish to `garage:wake` (a model has new work), `garage:ended` (a job ended)
and `garage:ev:{id}` (a job's stream grew). This module only moves messages from Redis to a
callback; deciding which parked poll or which SSE reader to wake is `broker/notify.py`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from . import keys
from .cancellation import honour_cancellation
from .outage import STORE_DOWN

__all__ = ["OnMessage", "OnSubscribed", "Subscriber"]

logger = logging.getLogger(__name__)

OnMessage = Callable[[str, str], None]
OnSubscribed = Callable[[bool], None]  # True: the wake channel's subscription is confirmed

_CONFIRM_TIMEOUT_S = 2.0


class Subscriber:
    def __init__(
        self, redis: Any, on_message: OnMessage, on_subscribed: OnSubscribed | None = None
    ) -> None:
        self._redis = redis
        self._on_message = on_message
        self._on_subscribed = on_subscribed or (lambda live: None)
        self._pubsub: Any = None
        self._channels: set[str] = {keys.WAKE_CHANNEL, keys.ENDED_CHANNEL, keys.REVOKED_CHANNEL}
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Reads messages until cancelled, resubscribing after a lost connection."""
        while True:
            self._pubsub = self._redis.pubsub()
            try:
                await self._pubsub.subscribe(*self._channels)
                honour_cancellation()  # else the read below would hold on for 30 s
                self.connected.set()
                while True:
                    message = await self._pubsub.get_message(timeout=30.0)
                    if message is not None:
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A broken connection: readers fall back on their own timeouts meanwhile.
                down = isinstance(exc, STORE_DOWN)  # expected: one line, no traceback
                logger.warning("pubsub.reconnect", exc_info=not down, extra={"error": str(exc)})
                self.connected.clear()
                self._on_subscribed(False)
                await asyncio.sleep(0.5)
            finally:
                pubsub, self._pubsub = self._pubsub, None
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "message":
            self._on_message(channel, message["data"])
        elif kind == "subscribe":
            if channel == keys.WAKE_CHANNEL:  # also after redis-py's own reconnects
                self._on_subscribed(True)
            for future in self._confirmations.pop(channel, []):
                if not future.done():
                    future.set_result(None)

    async def add(self, channel: str) -> None:
        """Subscribes, returning once Redis confirms, so no later publish is missed."""
        self._channels.add(channel)
        if self._pubsub is None or not self.connected.is_set():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(future)
        await self._pubsub.subscribe(channel)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, _CONFIRM_TIMEOUT_S)

    async def remove(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._pubsub is not None and self.connected.is_set():
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(channel)
