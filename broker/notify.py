"""Routes this process's pub/sub messages: wakes to parked polls, stream growth to readers.

One Redis subscription per broker process serves every SSE reader and every parked poll.
A reader of job X subscribes `garage:ev:X` once per process however many readers it has,
and is woken in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .longpoll import PollWaiters
from .store import Store, keys

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, store: Store) -> None:
        self.polls = PollWaiters()
        self._readers: dict[str, set[asyncio.Event]] = {}
        self._subscriber = store.subscriber(self._on_message)

    async def run(self) -> None:
        await self._subscriber.run()

    @property
    def connected(self) -> bool:
        return self._subscriber.connected.is_set()

    def _on_message(self, channel: str, data: str) -> None:
        if channel == keys.WAKE_CHANNEL:
            self.polls.wake(data)
        elif channel.startswith(keys.EVENTS_CHANNEL_PREFIX):
            job_id = channel[len(keys.EVENTS_CHANNEL_PREFIX) :]
            for event in self._readers.get(job_id, ()):
                event.set()

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the job's stream grows, for the duration of the block."""
        changed = asyncio.Event()
        readers = self._readers.setdefault(job_id, set())
        first = not readers
        readers.add(changed)
        try:
            if first:
                await self._subscriber.add(keys.events_channel(job_id))
            yield changed
        finally:
            readers.discard(changed)
            if not readers:
                del self._readers[job_id]
                await self._subscriber.remove(keys.events_channel(job_id))
