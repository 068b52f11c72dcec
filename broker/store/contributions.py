"""Contribution per worker key: what the rigs gave the pool, read back by day, key and worker.

`contribute` in lib.lua, reached from complete.lua in the same atomic call that accepts a
result, credits the worker key whose lease produced it (the lease's `lease_owner`) with
the job, the attempt's run time (lease to result: `busy_ms`), and the completion tokens
its worker reported (those of an estimated usage counted again as `estimated_tokens`), in
a hash per key and UTC day whose fields are `<counter><SEP><worker id>`, beside the key's
`name` and `owner` as they were that day (so a revoked key's history keeps both). Nothing
else writes it: a failed, cancelled or fenced attempt earns nothing and nothing is ever
taken away. A day's set of keys lets a read find them all; both expire `RETENTION_DAYS`
after their last write. This module only reads; points and grouping are the API's
(`api/contributions.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from . import keys
from .stats import SEP
from .usage import RETENTION_DAYS as USAGE_RETENTION_DAYS

__all__ = [
    "COUNTERS",
    "RETENTION_DAYS",
    "ContributionEntry",
    "ContributionStore",
    "lua_placeholders",
]

RETENTION_DAYS = USAGE_RETENTION_DAYS  # a year's points can be checked, as a year's usage
COUNTERS = ("jobs", "busy_ms", "completion_tokens", "estimated_tokens")


@dataclass(frozen=True)
class ContributionEntry:
    """What one worker (by id) under one worker key gave on one UTC day; `owner` and `name`
    are the key's as recorded that day (None: it had none, or was not found)."""

    day: date
    key: str
    worker: str
    owner: str | None = None
    name: str | None = None
    jobs: int = 0
    busy_ms: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0


def lua_placeholders() -> dict[str, str]:
    """What lib.lua's `__CONTRIBUTION_*__` and `__API_KEY_*__` placeholders stand for."""
    return {
        "__CONTRIBUTION_PREFIX__": keys.CONTRIBUTION_PREFIX,
        "__CONTRIBUTION_KEYS_PREFIX__": keys.CONTRIBUTION_KEYS_PREFIX,
        "__CONTRIBUTION_RETENTION_MS__": str(RETENTION_DAYS * 86_400_000),
        "__API_KEY_PREFIX__": keys.API_KEY_PREFIX,
        "__API_KEY_IDS__": keys.API_KEY_IDS,
    }


class ContributionStore:
    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def entries(
        self, *, start: date, end: date, key: str | None = None
    ) -> list[ContributionEntry]:
        """What was given from `start` to `end` (UTC days, both included) under worker key
        `key`, or under every key when None. Ordered by day, key, worker."""
        days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
        if key is not None:
            pairs = [(day, key) for day in days]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.smembers(keys.contribution_keys(day))
                found = await pipe.execute()
            pairs = [(day, k) for day, ids in zip(days, found, strict=True) for k in ids]
        if not pairs:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for day, k in pairs:
                pipe.hgetall(keys.contribution(k, day))
            hashes = await pipe.execute()
        entries = []
        for (day, k), fields in zip(pairs, hashes, strict=True):
            entries += _parse(day, k, fields)
        return sorted(entries, key=lambda e: (e.day, e.key, e.worker))


def _parse(day: date, key: str, fields: dict[str, str]) -> list[ContributionEntry]:
    """One hash's fields as an entry per worker; fields of no known counter are left out
    (a newer broker's, during a rolling upgrade)."""
    counts: dict[str, dict[str, int]] = {}
    for name, raw in fields.items():
        counter, sep, worker = name.partition(SEP)
        if sep and counter in COUNTERS:
            counts.setdefault(worker, {})[counter] = int(raw)
    owner, name = fields.get("owner") or None, fields.get("name") or None
    return [
        ContributionEntry(day, key, worker, owner, name, **values)
        for worker, values in counts.items()
    ]
