"""Parked worker polls, and which one an enqueue wakes.

A waiting worker costs one parked request and one entry here: no Redis connection, no
timer loop. A `wake` message for a model wakes the oldest parked poll serving it, one per
message per process, so an enqueue never stampedes every waiting poll. A poll that was
woken but leaves without claiming again (it was already full, or its client went away)
passes the wake on, so no job waits for a poll's timeout.
"""

from __future__ import annotations

import asyncio

__all__ = ["ParkedPoll", "PollWaiters"]


class ParkedPoll:
    __slots__ = ("event", "models", "woken_for")

    def __init__(self, models: frozenset[str]) -> None:
        self.models = models
        self.event = asyncio.Event()
        self.woken_for: str | None = None


class PollWaiters:
    def __init__(self) -> None:
        # model -> parked polls serving it, oldest first (dicts keep insertion order)
        self._by_model: dict[str, dict[ParkedPoll, None]] = {}

    def __len__(self) -> int:
        return len({p for polls in self._by_model.values() for p in polls})

    def park(self, models: list[str]) -> ParkedPoll:
        poll = ParkedPoll(frozenset(models))
        for model in poll.models:
            self._by_model.setdefault(model, {})[poll] = None
        return poll

    def leave(self, poll: ParkedPoll, *, used_wake: bool) -> None:
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
        for poll in self._by_model.get(model, ()):
            if not poll.event.is_set():
                poll.woken_for = model
                poll.event.set()
                return True
        return False
