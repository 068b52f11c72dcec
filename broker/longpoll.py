"""Parked worker polls, and which one an enqueue wakes.

A waiting worker costs one parked request and one entry here: no Redis connection, no
timer loop. A `wake` message for a model wakes the oldest parked poll serving it, one per
message per process, so an enqueue never stampedes every waiting poll. A poll that was
woken but leaves without claiming again (it was already full, or its client went away)
passes the wake on, so no job waits for a poll's timeout.

A broker that queues an interactive job while a poll for its model is parked in the same
process can `reserve` that poll and hand it the job directly: the job is created already
leased to it (`submit.lua`), which saves the wake and the claim on the latency path.
"""

from __future__ import annotations

import asyncio

from garage.client.schemas import Lease

__all__ = ["ParkedPoll", "PollWaiters"]


class ParkedPoll:
    __slots__ = ("event", "handed", "lease_owner", "left", "models", "reserved", "woken_for",
                 "worker_id")  # fmt: skip

    def __init__(self, models: frozenset[str], worker_id: str, lease_owner: str) -> None:
        self.models = models
        self.worker_id = worker_id
        self.lease_owner = lease_owner
        self.event = asyncio.Event()
        self.woken_for: str | None = None
        self.reserved = False  # a submit in this process is leasing a job to it
        self.handed: list[Lease] = []  # leases given to it directly
        self.left = False

    @property
    def free(self) -> bool:
        return not (self.event.is_set() or self.reserved or self.left)


class PollWaiters:
    def __init__(self) -> None:
        # model -> parked polls serving it, oldest first (dicts keep insertion order)
        self._by_model: dict[str, dict[ParkedPoll, None]] = {}

    def __len__(self) -> int:
        return len({p for polls in self._by_model.values() for p in polls})

    def park(self, models: list[str], *, worker_id: str = "", lease_owner: str = "") -> ParkedPoll:
        poll = ParkedPoll(frozenset(models), worker_id, lease_owner)
        for model in poll.models:
            self._by_model.setdefault(model, {})[poll] = None
        return poll

    def leave(self, poll: ParkedPoll, *, used_wake: bool) -> None:
        poll.left = True
        for model in poll.models:
            polls = self._by_model.get(model)
            if polls is not None:
                polls.pop(poll, None)
                if not polls:
                    del self._by_model[model]
        if poll.woken_for is not None and not used_wake:
            self.wake(poll.woken_for)

    def wake(self, model: str) -> bool:
        """Wakes the oldest parked poll for `model` that is not awake yet."""
        poll = self._first_free(model)
        if poll is None:
            return False
        poll.woken_for = model
        poll.event.set()
        return True

    def reserve(self, model: str) -> ParkedPoll | None:
        """The oldest free parked poll for `model`, kept from wakes until `hand` or
        `release`."""
        poll = self._first_free(model)
        if poll is not None:
            poll.reserved = True
        return poll

    def hand(self, poll: ParkedPoll, lease: Lease) -> bool:
        """Gives a reserved poll its lease; False if the poll left meanwhile."""
        poll.reserved = False
        if poll.left:
            return False
        poll.handed.append(lease)
        poll.event.set()
        return True

    def release(self, poll: ParkedPoll) -> None:
        poll.reserved = False

    def _first_free(self, model: str) -> ParkedPoll | None:
        return next((poll for poll in self._by_model.get(model, ()) if poll.free), None)
