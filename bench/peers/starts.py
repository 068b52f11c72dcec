"""The kill scenario's record of a held job's starts, for the peers whose jobs are Python
functions: the job pushes one entry onto a Redis list in its peer's database as it starts
(its pid and the time), and the runner pops them as they come.

The job-side half (`key`, `entry`) needs nothing but the standard library, so a worker
pays nothing for it. `connect` gives the runner's side a client that may block as long as
it asks: redis-py 8 gives up on a socket read after 5 s by default.
"""

from __future__ import annotations

import json
import os
import time

import redis

from .base import Start

__all__ = ["connect", "entry", "key", "next_start"]


def connect(url: str) -> redis.Redis:
    """A client for `url` whose blocking reads (BLPOP, XREAD BLOCK) wait as long as asked."""
    return redis.Redis.from_url(url, socket_timeout=None)


def key(token: str) -> str:
    return f"bench:starts:{token}"


def entry() -> str:
    """What a job pushes onto `key(token)` as it starts."""
    return json.dumps({"pid": os.getpid(), "at": time.time()})


def next_start(client: redis.Redis, token: str, timeout_s: float) -> Start | None:
    """The next start pushed for `token`, or None after `timeout_s`."""
    popped = client.blpop([key(token)], timeout=max(timeout_s, 0.01))
    if popped is None:
        return None
    fields = json.loads(popped[1])
    return Start(pid=fields["pid"], at=fields["at"])
