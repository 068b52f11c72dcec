"""Contribution per worker key: `GET /v1/contributions`, the leaderboard of what rigs gave.

Any user key (and an admin key) reads every worker key's; a worker key reads only its own.
The measures (jobs, run time, tokens) are kept by complete.lua (`store/contributions.py`);
this module picks the days, groups the rows, names the keys and owners, and turns the
measures into points by the broker's rule (`points_per_busy_s`, `points_per_1k_tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from starlette.responses import Response

from garage.contract import (
    ContributionGroup,
    ContributionQuery,
    ContributionReport,
    ContributionRow,
    ContributionTotals,
    PointsRule,
    Role,
)

from ..errors import BadRequest, Forbidden
from ..routing import Call, Endpoint, json_response
from ..settings import BrokerSettings
from ..store.contributions import ContributionEntry

__all__ = ["endpoints", "points_rule", "summarize"]


async def read_contributions(call: Call[None, ContributionQuery]) -> Response:
    """Jobs completed, the seconds they ran, tokens generated and points, per owner and
    worker key (or worker, or day), from `start` (or `days` back) to `end`, both included;
    the last 30 days by default; highest points first. A job counts on the day its result
    was accepted; a failed, cancelled or fenced attempt earns nothing. A worker key reads
    only its own."""
    query, caller = call.query, call.caller
    key = query.key
    if caller.role is Role.worker:
        if key not in (None, caller.id):
            raise Forbidden(
                "a worker key reads only its own contribution: leave out key", param="key"
            )
        key = caller.id
    today = datetime.fromtimestamp(call.broker.clock() / 1000, UTC).date()
    try:
        start, end = query.span(today)
    except ValueError as exc:
        raise BadRequest(str(exc), param="start") from None
    entries = await call.broker.store.contributions.entries(start=start, end=end, key=key)
    if query.owner is not None:
        entries = [e for e in entries if e.owner == query.owner]
    groups = query.groups
    names: dict[str, str] = {}
    if ContributionGroup.owner in groups or ContributionGroup.key in groups:
        names = {k.id: k.name for k in await call.broker.store.apikeys.list()}
    rule = points_rule(call.broker.settings)
    rows, total = summarize(entries, groups, names, rule)
    report = ContributionReport(
        start=start, end=end, group_by=groups, rule=rule, data=rows, total=total
    )
    return json_response(report)


def points_rule(settings: BrokerSettings) -> PointsRule:
    return PointsRule(
        points_per_busy_s=settings.points_per_busy_s,
        points_per_1k_tokens=settings.points_per_1k_tokens,
    )


@dataclass
class _Sums:
    jobs: int = 0
    busy_ms: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0

    def add(self, entry: ContributionEntry | _Sums) -> None:
        self.jobs += entry.jobs
        self.busy_ms += entry.busy_ms
        self.completion_tokens += entry.completion_tokens
        self.estimated_tokens += entry.estimated_tokens

    def totals(self, rule: PointsRule) -> dict[str, int | float]:
        return {
            "jobs": self.jobs,
            "busy_s": self.busy_ms / 1000,
            "completion_tokens": self.completion_tokens,
            "estimated_tokens": self.estimated_tokens,
            "points": rule.points(self.busy_ms, self.completion_tokens),
        }


def summarize(
    entries: Sequence[ContributionEntry],
    groups: Sequence[ContributionGroup],
    names: dict[str, str],
    rule: PointsRule,
) -> tuple[list[ContributionRow], ContributionTotals]:
    """The entries added up per group and overall, with their points by `rule`. Rows are
    ordered by day when grouped by day, then highest points first. A key's name is its
    name in `names` (the keys that exist), else the one recorded with its contribution."""
    sums: dict[tuple[object, ...], _Sums] = {}
    recorded: dict[str, str] = {}  # key id -> its name as last recorded (entries go by day)
    for entry in entries:
        fields = {
            ContributionGroup.day: entry.day,
            ContributionGroup.owner: entry.owner,
            ContributionGroup.key: entry.key,
            ContributionGroup.worker: entry.worker,
        }
        sums.setdefault(tuple(fields[g] for g in groups), _Sums()).add(entry)
        if entry.name:
            recorded[entry.key] = entry.name
    total = _Sums()
    rows: list[tuple[tuple[object, ...], ContributionRow]] = []
    for values, group_sums in sums.items():
        total.add(group_sums)
        row = ContributionRow(
            **{g.value: v for g, v in zip(groups, values, strict=True)},
            **group_sums.totals(rule),
        )
        if row.key is not None:
            row.key_name = names.get(row.key) or recorded.get(row.key)
        if row.owner is not None:
            row.owner_name = names.get(row.owner)
        rows.append((values, row))

    def order(item: tuple[tuple[object, ...], ContributionRow]) -> tuple[object, ...]:
        values, row = item
        return (row.day or date.min, -row.points, ["" if v is None else str(v) for v in values])

    rows.sort(key=order)
    return [row for _, row in rows], ContributionTotals(**total.totals(rule))


endpoints = [
    Endpoint("GET", "/v1/contributions", read_contributions,
             "Jobs, run time, tokens and points per worker key and owner", ("accounting",),
             Role.user, query=ContributionQuery, reply=ContributionReport, also=(Role.worker,)),
]  # fmt: skip
