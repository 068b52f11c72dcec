"""Time as the broker sees it: integer milliseconds since the epoch, injectable."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "from_ms", "system_clock"]

Clock = Callable[[], int]


def system_clock() -> int:
    return time.time_ns() // 1_000_000


def from_ms(value: str | int | None) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
