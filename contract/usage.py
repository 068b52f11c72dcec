"""`GET /v1/usage`: tokens used per user key, by UTC day and model."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from ._base import Out
from .days import DEFAULT_DAYS, MAX_DAYS, DaySpan
from .jobs import MAX_MODEL_NAME

__all__ = [
    "DEFAULT_USAGE_DAYS",
    "MAX_USAGE_DAYS",
    "UsageGroup",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
    "UsageTotals",
]

MAX_USAGE_DAYS = MAX_DAYS  # the longest span one request may ask for: the totals' retention
DEFAULT_USAGE_DAYS = DEFAULT_DAYS


class UsageGroup(StrEnum):
    day = "day"  # one row per UTC day
    model = "model"
    owner = "owner"  # the user key that submitted the jobs


class UsageQuery(DaySpan):
    """`GET /v1/usage?start=&end=&days=&model=&owner=&group_by=`."""

    model: str | None = Field(None, min_length=1, max_length=MAX_MODEL_NAME)
    owner: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Only this key's usage (an admin key; a user key reads only its own).",
    )
    group_by: str | None = Field(
        None,
        max_length=64,
        description="Comma-separated, from day, model, owner; default: day,model (and owner "
        "first for an admin key).",
    )

    @field_validator("group_by")
    @classmethod
    def _known_groups(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [name.strip() for name in value.split(",")]
        unknown = [name for name in names if name not in UsageGroup.__members__]
        if unknown:
            raise ValueError(f"unknown group {unknown[0]!r}; use day, model or owner")
        if len(set(names)) < len(names):
            raise ValueError("a group is named twice")
        return ",".join(names)

    @property
    def groups(self) -> list[UsageGroup] | None:
        return None if self.group_by is None else [UsageGroup(g) for g in self.group_by.split(",")]


class UsageTotals(Out):
    jobs: int = Field(0, description="Jobs that ended after running.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated_tokens: int = Field(
        0, description="Of the tokens, those counted by estimate (docs/accounting.md)."
    )


class UsageRow(UsageTotals):
    """The totals of one group; the fields not grouped by are null."""

    day: date | None = None
    model: str | None = None
    owner: str | None = None
    owner_name: str | None = Field(None, description="The owner key's name, while it exists.")


class UsageReport(Out):
    object: Literal["usage"] = "usage"
    start: date
    end: date
    group_by: list[UsageGroup]
    data: list[UsageRow]
    total: UsageTotals
