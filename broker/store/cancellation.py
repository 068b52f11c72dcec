"""A guard against a redis-py quirk: a cancellation that does not take.

redis-py 8.0 and 8.1 can swallow a cancellation that lands while a connection is being
opened: the call then goes on as if nothing had happened, and the task's next await is not
cancelled either. A loop that calls Redis again and again (the reaper, the finalizer, the
pub/sub reader) would then never stop, and a broker asked to stop in its first
milliseconds would hang. Such loops call `honour_cancellation` after each Redis call.
(`tests/store/test_channels.py` shows the quirk.)
"""

from __future__ import annotations

import asyncio

__all__ = ["honour_cancellation"]


def honour_cancellation() -> None:
    """Raises CancelledError if the current task was asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
