"""`GET /v1/contributions`: what the rigs gave the pool, per worker key and its owner."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from ._base import Out
from .days import DaySpan

__all__ = [
    "ContributionGroup",
    "ContributionQuery",
    "ContributionReport",
    "ContributionRow",
    "ContributionTotals",
    "PointsRule",
]


class ContributionGroup(StrEnum):
    owner = "owner"  # the user key that owns the worker key (null: a key with no owner)
    key = "key"  # the worker key whose leases produced the results
    worker = "worker"  # one worker daemon (its id) under the key
    day = "day"  # one UTC day


_DEFAULT_GROUPS = "owner,key"


class ContributionQuery(DaySpan):
    """`GET /v1/contributions?start=&end=&days=&key=&owner=&group_by=`."""

    key: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Only this worker key's contribution (a worker key reads only its own).",
    )
    owner: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Only the worker keys this user key owns.",
    )
    group_by: str | None = Field(
        None,
        max_length=64,
        description="Comma-separated, from owner, key, worker, day; default: owner,key.",
    )

    @field_validator("group_by")
    @classmethod
    def _known_groups(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [name.strip() for name in value.split(",")]
        unknown = [name for name in names if name not in ContributionGroup.__members__]
        if unknown:
            raise ValueError(f"unknown group {unknown[0]!r}; use owner, key, worker or day")
        if len(set(names)) < len(names):
            raise ValueError("a group is named twice")
        return ",".join(names)

    @property
    def groups(self) -> list[ContributionGroup]:
        return [ContributionGroup(g) for g in (self.group_by or _DEFAULT_GROUPS).split(",")]


class PointsRule(Out):
    """points = busy_s * points_per_busy_s + completion_tokens / 1000 * points_per_1k_tokens,
    from the broker's settings when read (docs/accounting.md)."""

    points_per_busy_s: float
    points_per_1k_tokens: float

    def points(self, busy_ms: int, completion_tokens: int) -> float:
        """The points of this much run time and these tokens, to a thousandth."""
        earned = busy_ms / 1000 * self.points_per_busy_s
        earned += completion_tokens / 1000 * self.points_per_1k_tokens
        return round(earned, 3)


class ContributionTotals(Out):
    jobs: int = Field(0, description="Jobs completed: results accepted from the key's leases.")
    busy_s: float = Field(
        0.0,
        description="Seconds those jobs ran: each from its lease to its result (the attempt "
        "that produced it), to the millisecond.",
    )
    completion_tokens: int = Field(0, description="Tokens generated, as their workers reported.")
    estimated_tokens: int = Field(
        0, description="Of the tokens, those counted by estimate (docs/accounting.md)."
    )
    points: float = Field(0.0, description="Points earned by the rule in `rule`.")


class ContributionRow(ContributionTotals):
    """The totals of one group; the fields not grouped by are null."""

    day: date | None = None
    owner: str | None = Field(None, description="The user key that owns the worker key.")
    owner_name: str | None = Field(None, description="The owner key's name, while it exists.")
    key: str | None = Field(None, description="The worker key.")
    key_name: str | None = Field(
        None, description="The worker key's name (as it was, for a revoked key)."
    )
    worker: str | None = Field(None, description="The worker daemon's id.")


class ContributionReport(Out):
    object: Literal["contributions"] = "contributions"
    start: date
    end: date
    group_by: list[ContributionGroup]
    rule: PointsRule
    data: list[ContributionRow] = Field(
        description="Highest points first (per day first, when grouped by day)."
    )
    total: ContributionTotals
