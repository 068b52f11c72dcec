"""What a call to the store raises while Redis cannot be reached (restarting, say): a
moment every caller handles with a one-line warning and a retry, not a traceback."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["STORE_DOWN"]

# redis-py's errors, and the script channel's (builtin ConnectionError).
STORE_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError)
