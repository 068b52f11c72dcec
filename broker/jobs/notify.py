"""Routes this process's pub/sub messages to the requests waiting on them.

One Redis subscription per broker process serves every parked poll, every request waiting
for a job's end, and every SSE reader:

- `garage:wake` ("<model> <job id>") wakes one parked poll for the model (`polls.py`);
  "<model> *<n>" (a batch made n jobs claimable at once) wakes up to n.
- `garage:ended` (a job id) releases the requests in this process waiting for that job.
  A process about to wait marks the job as watched (`submit.lua` for its own submits,
  `watch.lua` otherwise), and an end is published only when a process other than the one
  ending it watches; so a job nobody waits for (a batch job) or one that ends where it is
  waited for costs no message, and no waiting request costs a SUBSCRIBE.
- `garage:ev:{id}` (a new stream entry, with the entry before it and the event itself)
  hands the event to the job's readers in this process (`StreamReader`); a process
  subscribes to it once, however many of its readers follow the job.
- `garage:batch-ev:{id}` (a batch's counts changed, or it reached a final status) wakes
  the requests waiting on that batch, with one subscription per process in the same way.

What this process did itself (a submit, a completion) it signals at once, without waiting
for the message to come back from Redis; the echo of a wake it already delivered is
dropped. A completion in this process also hands its waiters the finished job, and a
stream's message carries its new event, so neither is read back from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

from garage.contract import Job

from ..store import Store, keys
from ..store.events import StoredEvent
from .polls import ClaimHints, ParkedPolls

__all__ = ["JobEnd", "Notifier", "StreamReader"]

_LOCAL_WAKES_MAX = 10_000
_PUSHED_MAX = 256  # events handed to a reader that is slow to take them; then it reads


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


class StreamReader:
    """One reader of a job's stream in this process. Each message about the stream brings
    its new event and the entry before it; the reader takes the events that continue
    from where it is (`take`) and reads the stream only when one is missing (`stale`:
    something came that does not follow on, or a message may have been lost)."""

    __slots__ = ("_pushed", "changed", "stale")

    def __init__(self) -> None:
        self.changed = asyncio.Event()  # a message came, or `stale` was set
        self.stale = True  # nothing read yet
        self._pushed: deque[tuple[str | None, StoredEvent]] = deque(maxlen=_PUSHED_MAX)

    @property
    def has_pushed(self) -> bool:
        return bool(self._pushed)

    def push(self, previous_id: str | None, event: StoredEvent) -> None:
        self._pushed.append((previous_id, event))
        self.changed.set()

    def take(self, position: str | None) -> list[StoredEvent]:
        """The events from messages that follow `position` without a gap. One that does not
        follow on means something was missed: the stream is to be read instead."""
        taken: list[StoredEvent] = []
        while self._pushed:
            previous_id, event = self._pushed.popleft()
            if previous_id != position:
                if _entry_order(event.id) > _entry_order(position):  # not one it read
                    self.stale = True
                    self._pushed.clear()
                continue
            taken.append(event)
            position = event.id
        return taken


def _entry_order(entry_id: str | None) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as something that sorts; None sorts first."""
    if entry_id is None:
        return (-1, -1)
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


L = TypeVar("L", StreamReader, asyncio.Event)  # a listener on a channel


class Notifier:
    def __init__(self, store: Store, *, on_revoked: Callable[[str | None], None]) -> None:
        """`on_revoked` gets the id of each key an admin revokes (on any broker), and None
        after pub/sub was down, when a revocation may have gone unheard."""
        # Names this process in a job's 'watched' field, so a job this process both waits
        # for and ends is announced to nobody else (see finish in lib.lua).
        self.process_id = secrets.token_hex(8)
        self.polls = ParkedPolls()
        self.hints = ClaimHints()
        self._streams: dict[str, set[StreamReader]] = {}
        self._ends: dict[str, set[JobEnd]] = {}
        self._batches: dict[str, set[asyncio.Event]] = {}  # batch id -> requests waiting
        self._woken_here: set[str] = set()
        self._queueing: dict[str, bool] = {}  # job id -> its wake's echo already came
        self._on_revoked = on_revoked
        self.stopping = False  # set once, when this process stops serving
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
            self._on_revoked(None)

    def _on_message(self, channel: str, data: str) -> None:
        if channel == keys.WAKE_CHANNEL:
            model, _, job_id = data.rpartition(" ")
            self.hints.woken(model)
            if job_id.startswith("*"):  # a batch's jobs, none queued by a submit here
                self.polls.wake(model, int(job_id[1:]))
            elif job_id in self._woken_here:
                self._woken_here.discard(job_id)
            else:
                self.polls.wake(model)
                if job_id in self._queueing:  # the echo beat the script's own reply
                    self._queueing[job_id] = True
        elif channel == keys.ENDED_CHANNEL:
            self.job_ended(data)
        elif channel == keys.REVOKED_CHANNEL:
            self._on_revoked(data)
        elif channel.startswith(keys.EVENTS_CHANNEL_PREFIX):
            readers = self._streams.get(channel[len(keys.EVENTS_CHANNEL_PREFIX) :])
            if readers:
                previous_id, entry_id, event = data.split(" ", 2)
                stored = StoredEvent(entry_id, event)
                for reader in readers:
                    reader.push(None if previous_id == "-" else previous_id, stored)
        elif channel.startswith(keys.BATCH_CHANNEL_PREFIX):
            for changed in self._batches.get(channel[len(keys.BATCH_CHANNEL_PREFIX) :], ()):
                changed.set()

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

    def stop_waiting(self) -> None:
        """This process is stopping: every request here that waits (for a job's end, a
        batch's progress, a stream's next event) is woken to answer with what it has, so
        it ends cleanly before the server closes its connection."""
        self.stopping = True
        for ends in self._ends.values():
            for end in ends:
                end.set()
        for changed in (e for events in self._batches.values() for e in events):
            changed.set()
        for reader in (r for readers in self._streams.values() for r in readers):
            reader.changed.set()

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

    def stream(self, job_id: str) -> contextlib.AbstractAsyncContextManager[StreamReader]:
        """A reader of the job's stream, for the duration of the block."""
        channel = keys.events_channel(job_id)
        return self._listening(self._streams, job_id, channel, StreamReader())

    def batch_changes(self, batch_id: str) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """An event set whenever the batch's counts change or it reaches a final status,
        for the duration of the block; subscribed before the block starts."""
        channel = keys.batch_channel(batch_id)
        return self._listening(self._batches, batch_id, channel, asyncio.Event())

    @contextlib.asynccontextmanager
    async def _listening(
        self, registry: dict[str, set[L]], key: str, channel: str, listener: L
    ) -> AsyncIterator[L]:
        """Registers `listener` under `key` for the block; this process subscribes to
        `channel` once, however many listeners it has, until the last one leaves."""
        listeners = registry.setdefault(key, set())
        first = not listeners
        listeners.add(listener)
        try:
            if first:
                await self._subscriber.add(channel)
            yield listener
        finally:
            listeners.discard(listener)
            if not listeners:
                del registry[key]
                await self._subscriber.remove(channel)
