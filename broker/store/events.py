"""A job's event stream as stored in Redis: read it from a position, for SSE and resume.

Events are appended only by the Lua scripts (see `lib.lua`'s `emit`); this module reads.
Stream entry ids (`<ms>-<seq>`) are the SSE event ids, so `Last-Event-ID` resumes exactly
after the last event a reader saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import keys

__all__ = ["EventStore", "StoredEvent", "is_event_id"]

_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def is_event_id(value: str) -> bool:
    return bool(_EVENT_ID.match(value))


@dataclass(frozen=True)
class StoredEvent:
    id: str
    data: str  # the event as JSON text, exactly as the script wrote it


class EventStore:
    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def read(self, job_id: str, *, after: str | None, count: int = 500) -> list[StoredEvent]:
        """Events after the entry id `after` (from the start when None), oldest first."""
        start = f"({after}" if after else "-"
        entries = await self._redis.xrange(keys.events(job_id), min=start, max="+", count=count)
        return [StoredEvent(id=entry_id, data=fields["e"]) for entry_id, fields in entries]
