"""A span of UTC days in a query (`start`, `end`, `days`), shared by the reports kept per
day: usage (`usage.py`) and contribution (`contributions.py`)."""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import Field

from ._base import In

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "DaySpan"]

MAX_DAYS = 400  # the longest span one request may ask for: the totals' retention
DEFAULT_DAYS = 30


class DaySpan(In):
    """`start`, `end` or `days`: the days a report covers."""

    start: date | None = Field(
        None, description="First UTC day (YYYY-MM-DD); default: `days` days up to `end`."
    )
    end: date | None = Field(None, description="Last UTC day, included; default: today.")
    days: int | None = Field(
        None,
        ge=1,
        le=MAX_DAYS,
        description="This many days up to `end`, today included by default (30), instead of "
        "`start`.",
    )

    def span(self, today: date) -> tuple[date, date]:
        """The first and last day asked for, defaults filled in from `today` (UTC).
        Raises ValueError for a span that is backwards or too long."""
        if self.start is not None and self.days is not None:
            raise ValueError("give start or days, not both")
        end = self.end or today
        days = self.days or DEFAULT_DAYS
        try:
            start = self.start or end - timedelta(days=days - 1)
        except OverflowError:
            raise ValueError(f"no {days} days before {end}; give start") from None
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        if (end - start).days >= MAX_DAYS:
            raise ValueError(f"at most {MAX_DAYS} days at once")
        return start, end
