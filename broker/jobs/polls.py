"""Parked worker polls, and which one an enqueue wakes or hands a job to.

A waiting worker costs one parked request and one entry here: no Redis connection, no
timer loop. A `wake` message for a model wakes the oldest parked poll serving it, one per
message per process, so an enqueue never stampedes every waiting poll. A poll that was
woken but leaves without claiming again (it was already full, or its client went away)
passes the wake on, so no job waits for a poll's timeout.

A submit in this process may instead `reserve` a parked poll for its model and create the
job already leased to that poll's worker (`submit.lua`), which saves the wake and the
claim on the latency path. Only a poll that is `waiting` (its claim found nothing) is
reserved; one still claiming is woken instead, so it never holds a handed job beside the
ones it claimed. A reserved poll neither leaves nor takes wakes until the submit `hand`s
it the lease or `release`s it: the poll answers only once the job exists in Redis, so a
report on it, to any broker replica, always finds it.
"""

from __future__ import annotations

import asyncio

from garage.contract import Lease

__all__ = ["ClaimHints", "ParkedPoll", "ParkedPolls"]


class ParkedPoll:
    __slots__ = ("event", "handed", "lease_owner", "left", "models", "reserved", "settled",
                 "waiting", "woken_for", "worker_id")  # fmt: skip

    def __init__(self, models: frozenset[str], worker_id: str, lease_owner: str) -> None:
        self.models = models
        self.worker_id = worker_id
        self.lease_owner = lease_owner
        self.event = asyncio.Event()  # woken, or handed a lease
        self.settled = asyncio.Event()  # set while no submit holds it reserved
        self.settled.set()
        self.woken_for: str | None = None
        self.waiting = False  # its claim found nothing: it may be handed a job directly
        self.reserved = False  # a submit is creating a job leased to it
        self.handed: list[Lease] = []  # leases given to it directly
        self.left = False

    @property
    def free(self) -> bool:
        return not (self.event.is_set() or self.left or self.reserved)


class ParkedPolls:
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

    def wake(self, model: str, count: int = 1) -> bool:
        """Wakes the oldest `count` parked polls for `model` that are not awake yet;
        whether it woke any."""
        woken = 0
        while woken < count and (poll := self._first_free(model)) is not None:
            poll.woken_for = model
            poll.event.set()
            woken += 1
        return woken > 0

    def waiting(self, model: str) -> int:
        """How many parked polls for `model` a submit could hand a job to now."""
        return sum(1 for p in self._by_model.get(model, ()) if p.free and p.waiting)

    def reserve(self, model: str) -> ParkedPoll | None:
        """The oldest free poll for `model` whose claim found nothing, held for one submit
        until it calls `hand` or `release`."""
        poll = next((p for p in self._by_model.get(model, ()) if p.free and p.waiting), None)
        if poll is not None:
            poll.reserved = True
            poll.settled.clear()
        return poll

    def hand(self, poll: ParkedPoll, lease: Lease) -> None:
        """Gives a reserved poll the lease of the job just created for it."""
        poll.handed.append(lease)
        poll.event.set()
        self._settle(poll)

    def release(self, poll: ParkedPoll) -> None:
        """Ends a reservation that brought no job; the poll waits on as before."""
        self._settle(poll)

    @staticmethod
    def _settle(poll: ParkedPoll) -> None:
        poll.reserved = False
        poll.settled.set()

    def _first_free(self, model: str) -> ParkedPoll | None:
        return next((poll for poll in self._by_model.get(model, ()) if poll.free), None)


class ClaimHints:
    """The models this process knows to have nothing to claim, so a poll for them parks at
    once instead of asking Redis: a busy worker polls again after every job, and an idle
    fleet re-polls every half minute.

    Every change that makes a job claimable publishes a wake for its model (`submit.lua`,
    and `requeue` in `lib.lua`), and while subscribed this process sees every wake. So a
    model a claim found empty stays empty until a wake for it arrives, and that wake also
    wakes a poll parked for it, which then claims. The snapshot taken before the claim
    makes a wake that arrives while the claim runs count. Knowledge starts at a confirmed
    subscription to the wake channel, and each new one (after a reconnect, where wakes
    may have been lost) forgets everything known before it.
    """

    def __init__(self) -> None:
        self._wakes: dict[str, int] = {}  # model -> wakes seen
        self._empty: dict[str, tuple[int, int]] = {}  # model -> (wakes, epoch) found empty
        self._epoch = 0  # counts confirmed subscriptions; 0: none yet, or lost
        self._live = False

    def subscribed(self) -> None:
        self._epoch += 1
        self._empty.clear()
        self._live = True

    def unsubscribed(self) -> None:
        self._live = False
        self._empty.clear()

    def woken(self, model: str) -> None:
        self._wakes[model] = self._wakes.get(model, 0) + 1

    def snapshot(self, models: list[str]) -> tuple[int, dict[str, int]]:
        """What `found_empty` needs; take it before the claim is sent."""
        return self._epoch, {model: self._wakes.get(model, 0) for model in models}

    def found_empty(self, snapshot: tuple[int, dict[str, int]]) -> None:
        epoch, wakes = snapshot
        if self._live and epoch == self._epoch:
            for model, count in wakes.items():
                self._empty[model] = (count, epoch)

    def known_empty(self, models: list[str]) -> bool:
        return (
            self._live
            and bool(models)
            and all(self._empty.get(m) == (self._wakes.get(m, 0), self._epoch) for m in models)
        )
