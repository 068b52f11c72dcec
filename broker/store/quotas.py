"""Per-key quotas, enforced by the scripts that create jobs (`submit.lua`, `commit_batch.lua`),
so they hold exactly however many brokers share the Redis:

- submits a minute, as a generic cell rate (GCRA): `garage:rate:{owner}` holds the time
  at which the key's allowance is next whole; a key may burst a minute's worth, then
  sends at the steady rate. A batch is one submit.
- jobs queued or running at once: `garage:active:{owner}` is counted up when jobs are
  created and down in `finish` when each ends.

A refusal changes nothing (no job, no count) and tells the caller when to retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import keys

__all__ = ["NO_LIMITS", "Limits", "QuotaRefused", "RateState", "lua_placeholders"]


# How far a job moves its owner's fair-share clock (lib.lua's fair_tag): owners take turns
# a job at a time; in ms, so tags stay comparable with arrival times.
FAIR_QUANTUM_MS = 1000


def lua_placeholders() -> dict[str, str]:
    return {
        "__ACTIVE_PREFIX__": keys.ACTIVE_PREFIX,
        "__RATE_PREFIX__": keys.RATE_PREFIX,
        "__FAIR_PREFIX__": keys.FAIR_PREFIX,
        "__FAIR_QUANTUM_MS__": str(FAIR_QUANTUM_MS),
    }


@dataclass(frozen=True)
class Limits:
    """The limits a submit is held to; 0 (or None) is no limit."""

    requests_per_minute: int | None = None
    max_active_jobs: int | None = None

    def args(self) -> list[Any]:
        return [self.requests_per_minute or "", self.max_active_jobs or ""]


NO_LIMITS = Limits()


@dataclass(frozen=True)
class RateState:
    """The key's submit rate after an accepted submit, for the `x-ratelimit-*` headers."""

    limit: int
    remaining: int
    reset_ms: int  # until the whole minute's allowance is back

    def headers(self) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for requests."""
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": _duration(self.reset_ms),
        }

    @classmethod
    def read(cls, limit: Any, remaining: Any, reset_ms: Any) -> RateState | None:
        if limit in ("", None) or remaining in ("", None):
            return None
        return cls(int(limit), int(remaining), int(reset_ms))


class QuotaRefused(Exception):
    """A script refused a submit: `reason` "rate" (`retry_ms` until one more is allowed,
    `limit` a minute) or "active" (`active` jobs, `limit` the most)."""

    def __init__(self, reason: str, first: Any, second: Any) -> None:
        self.reason = reason
        self.limit = int(second)
        self.retry_ms = int(first) if reason == "rate" else 5000
        self.active = int(first) if reason == "active" else 0
        super().__init__(f"{reason} limit {self.limit}")

    def rate_state(self) -> RateState:
        return RateState(self.limit, 0, self.retry_ms)


def _duration(ms: int) -> str:
    """OpenAI's way of writing a reset time: "20ms", "1s", "6m0s"."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"
