"""Routes this process's pub/sub messages to the requests waiting on them.

One Redis subscription per broker process serves every parked poll, every request waiting
for a job's end, and every SSE reader:

- `garage:wake` ("<model> <job id>") wakes one parked poll for the model (`polls.py`).
- `garage:ended` (a job id) releases the requests in this process waiting for that job.
  A process about to wait marks the job as watched (`submit.lua` for its own submits,
  `watch.lua` otherwise), and an end is published only when a process other than the one
  ending it watches; so a job nobody waits for (a batch job) or one that ends where it is
  waited for costs no message, and no waiting request costs a SUBSCRIBE.
- `garage:ev:{id}` (a new stream entry) wakes the SSE readers of that job; a process
  subscribes to it once, however many of its readers follow the job.

What this process did itself (a submit, a completion) it signals at once, without waiting
for the message to come back from Redis; the echo of a wake it already delivered is dropped.
A completion in this process also hands its waiters the finished job, so they answer
without reading it back from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator

from garage.contract import Job

from ..store import Store, keys
from .polls import ClaimHints, ParkedPolls

__all__ = ["JobEnd", "Notifier"]

_LOCAL_WAKES_MAX = 10_000


class JobEnd:
    """Set when a job ends. `job` is the finished job when this process ended it."""

    __slots__ = ("_event", "job")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.job: Job | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def set(self, job: Job | None = None) -> None:
        if job is not None:
            self.job = job
        self._event.set()


class Notifier:
    def __init__(self, store: Store) -> None:
        # Names this process in a job's 'watched' field, so a job this process both waits
        # for and ends is announced to nobody else (see finish in lib.lua).
        self.process_id = secrets.token_hex(8)
        self.polls = ParkedPolls()
        self.hints = ClaimHints()
        self._streams: dict[str, set[asyncio.Event]] = {}
        self._ends: dict[str, set[JobEnd]] = {}
        self._woken_here: set[str] = set()
        self._queueing: dict[str, bool] = {}  # job id -> its wake's echo already came
        self._subscriber = store.subscriber(self._on_message, self._on_subscribed)

    async def run(self) -> None:
        await self._subscriber.run()

    @property
    def connected(self) -> bool:
        return self._subscriber.connected.is_set()

    def _on_subscribed(self, live: bool) -> None:
        if live:
            self.hints.subscribed()
        else:
            self.hints.unsubscribed()

    def _on_message(self, channel: str, data: str) -> None:
        if channel == keys.WAKE_CHANNEL:
            model, _, job_id = data.rpartition(" ")
            self.hints.woken(model)
            if job_id in self._woken_here:
                self._woken_here.discard(job_id)
            else:
                self.polls.wake(model)
                if job_id in self._queueing:  # the echo beat the script's own reply
                    self._queueing[job_id] = True
        elif channel == keys.ENDED_CHANNEL:
            self.job_ended(data)
        elif channel.startswith(keys.EVENTS_CHANNEL_PREFIX):
            for event in self._streams.get(channel[len(keys.EVENTS_CHANNEL_PREFIX) :], ()):
                event.set()

    @contextlib.contextmanager
    def queueing(self, job_id: str) -> Iterator[None]:
        """Marks a job this process is queueing, for the block: call `job_queued` in it.
        Its wake may come back from Redis before the script's reply does; it then wakes
        the poll, and `job_queued` wakes no other."""
        self._queueing[job_id] = False
        try:
            yield
        finally:
            del self._queueing[job_id]

    def job_queued(self, model: str, job_id: str) -> None:
        """A job this process just queued: wake a local poll now, skip the echo later."""
        if self._queueing.get(job_id):
            return
        self.hints.woken(model)
        if self.polls.wake(model):
            if len(self._woken_here) >= _LOCAL_WAKES_MAX:  # echoes lost to a reconnect
                self._woken_here.clear()
            self._woken_here.add(job_id)

    def job_ended(self, job_id: str, job: Job | None = None) -> None:
        for end in self._ends.get(job_id, ()):
            end.set(job)

    def awaits_end(self, job_id: str) -> bool:
        """Whether a request in this process waits for the job's end."""
        return job_id in self._ends

    @contextlib.contextmanager
    def until_ended(self, job_id: str) -> Iterator[JobEnd]:
        """Set when the job ends, for the duration of the block."""
        ended = JobEnd()
        self._ends.setdefault(job_id, set()).add(ended)
        try:
            yield ended
        finally:
            waiting = self._ends[job_id]
            waiting.discard(ended)
            if not waiting:
                del self._ends[job_id]

    @contextlib.asynccontextmanager
    async def stream(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the job's stream grows, for the duration of the block."""
        changed = asyncio.Event()
        readers = self._streams.setdefault(job_id, set())
        first = not readers
        readers.add(changed)
        try:
            if first:
                await self._subscriber.add(keys.events_channel(job_id))
            yield changed
        finally:
            readers.discard(changed)
            if not readers:
                del self._streams[job_id]
                await self._subscriber.remove(keys.events_channel(job_id))
