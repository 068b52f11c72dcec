"""How the worker retries calls to a broker that is down: exponential backoff with jitter.

Only "no answer" (connection refused, reset, timeout) and 5xx (503 too: the broker's
store is restarting, say) are retried; every other answer from the broker (409 lease
lost, 404, 401) is final and goes to the caller. Every call the worker retries is safe to
send again: polls lease nothing twice (a lease handed to a poll nobody reads runs out),
reports are numbered, and a final report sent again is answered as taken.

`call_broker` makes the first try itself and builds tenacity's machinery only once a try
failed: a job's calls then cost no retry bookkeeping while the broker answers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
    wait_random_exponential,
)

from garage.client import BrokerUnreachable, ServerError, Unavailable

__all__ = ["call_broker"]

T = TypeVar("T")
_RETRIED = (BrokerUnreachable, ServerError, Unavailable)

logger = logging.getLogger(__name__)


def _log(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            f"{what}.retry",
            extra={"attempt": state.attempt_number, "error": str(error)},
        )

    return before_sleep


def _retrying(what: str, *, max_wait_s: float) -> AsyncRetrying:
    """Retries `what` while the broker gives no answer, waiting up to `max_wait_s` between
    tries (random, growing exponentially from 0.2 s)."""
    return AsyncRetrying(
        retry=retry_if_exception_type(_RETRIED),
        wait=wait_random_exponential(multiplier=0.2, max=max_wait_s),
        stop=stop_never,
        reraise=True,
        before_sleep=_log(what),
    )


async def call_broker(
    what: str, call: Callable[[], Awaitable[T]], *, max_wait_s: float = 30.0
) -> T:
    """`call()`, tried again while the broker gives no answer (see `_retrying`)."""
    try:
        return await call()
    except _RETRIED as exc:
        logger.warning(f"{what}.retry", extra={"attempt": 1, "error": str(exc)})
    retrying = _retrying(what, max_wait_s=max_wait_s)
    return await retrying(call)
