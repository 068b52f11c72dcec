"""Usage per user key: the totals the Lua scripts keep, read back by day, owner and model.

The scripts that end a job (through `finish` in lib.lua) add the job to its owner's hash
for the UTC day it ended, in the same atomic call as the state change, so the totals are
exact with any number of brokers. A field is `<counter><SEP><model>`; a day's set of
owners lets an admin read everyone's. Both expire `RETENTION_DAYS` after their last write.
This module only reads; grouping the rows is the API's (`api/usage.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from . import keys
from .stats import SEP

__all__ = ["COUNTERS", "RETENTION_DAYS", "UsageEntry", "UsageStore", "lua_placeholders"]

RETENTION_DAYS = 400  # a year and a bit: a month's bill can be checked the next year
COUNTERS = ("jobs", "prompt_tokens", "completion_tokens", "estimated_tokens")


@dataclass(frozen=True)
class UsageEntry:
    """One owner's totals for one model on one UTC day."""

    day: date
    owner: str
    model: str
    jobs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0


def lua_placeholders() -> dict[str, str]:
    """What lib.lua's `__USAGE_*__` placeholders stand for."""
    return {
        "__USAGE_PREFIX__": keys.USAGE_PREFIX,
        "__USAGE_OWNERS_PREFIX__": keys.USAGE_OWNERS_PREFIX,
        "__USAGE_RETENTION_MS__": str(RETENTION_DAYS * 86_400_000),
    }


class UsageStore:
    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def entries(
        self, *, start: date, end: date, owner: str | None = None, model: str | None = None
    ) -> list[UsageEntry]:
        """The totals from `start` to `end` (UTC days, both included) of `owner`, or of
        every owner when None; only `model`'s when given. Ordered by day, owner, model."""
        days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
        if owner is not None:
            pairs = [(day, owner) for day in days]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.smembers(keys.usage_owners(day))
                found = await pipe.execute()
            pairs = [(day, o) for day, owners in zip(days, found, strict=True) for o in owners]
        if not pairs:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for day, o in pairs:
                pipe.hgetall(keys.usage(o, day))
            hashes = await pipe.execute()
        entries = []
        for (day, o), fields in zip(pairs, hashes, strict=True):
            entries += _parse(day, o, fields, model)
        return sorted(entries, key=lambda e: (e.day, e.owner, e.model))


def _parse(day: date, owner: str, fields: dict[str, str], model: str | None) -> list[UsageEntry]:
    """One hash's fields as an entry per model; fields of no known counter are left out
    (a newer broker's, during a rolling upgrade)."""
    counts: dict[str, dict[str, int]] = {}
    for name, raw in fields.items():
        counter, _, field_model = name.partition(SEP)
        if counter in COUNTERS and (model is None or field_model == model):
            counts.setdefault(field_model, {})[counter] = int(raw)
    return [UsageEntry(day, owner, m, **values) for m, values in counts.items()]
