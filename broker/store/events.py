"""A job's event stream as stored in Redis: read it from a position, for SSE and resume.

Events are appended only by the Lua scripts (see `lib.lua`'s `emit`); this module reads.
Stream entry ids (`<ms>-<seq>`) are the SSE event ids, so `Last-Event-ID` resumes exactly
after the last event a reader saw.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from . import keys

__all__ = ["EventStore", "StoredEvent", "is_event_id"]

_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


_MAX_PART = 2**64 - 1


def is_event_id(value: str) -> bool:
    """Whether `value` is a stream entry id Redis accepts (`<ms>-<seq>`, each < 2^64)."""
    if not _EVENT_ID.match(value):
        return False
    ms, _, seq = value.partition("-")
    return int(ms) <= _MAX_PART and int(seq) <= _MAX_PART


@dataclass(frozen=True)
class StoredEvent:
    id: str
    data: str  # the event as JSON text, exactly as the script wrote it

    @cached_property
    def event(self) -> dict[str, Any]:
        return json.loads(self.data)

    @property
    def type(self) -> str:
        return self.event["type"]


class EventStore:
    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def read(self, job_id: str, *, after: str | None, count: int = 500) -> list[StoredEvent]:
        """Events after the entry id `after` (from the start when None), oldest first."""
        start = f"({after}" if after else "-"
        entries = await self._redis.xrange(keys.events(job_id), min=start, max="+", count=count)
        return [StoredEvent(id=entry_id, data=fields["e"]) for entry_id, fields in entries]

    async def last(self, job_id: str) -> StoredEvent | None:
        """The job's newest event, if it has any."""
        entries = await self._redis.xrevrange(keys.events(job_id), count=1)
        return StoredEvent(id=entries[0][0], data=entries[0][1]["e"]) if entries else None
