"""Usage per user key: `GET /v1/usage`, the totals by UTC day, model and owner.

A user key reads its own; an admin key reads everyone's, or one owner's with `owner`.
The totals are kept by the scripts that end jobs (`store/usage.py`); this module picks the
days, groups the rows and names the owners.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from starlette.responses import Response

from garage.contract import Role, UsageGroup, UsageQuery, UsageReport, UsageRow, UsageTotals

from ..errors import BadRequest, Forbidden
from ..routing import Call, Endpoint, json_response
from ..store.usage import UsageEntry

__all__ = ["endpoints", "summarize"]

_USER_GROUPS = (UsageGroup.day, UsageGroup.model)
_ADMIN_GROUPS = (UsageGroup.owner, UsageGroup.day, UsageGroup.model)


async def read_usage(call: Call[None, UsageQuery]) -> Response:
    """Jobs and tokens per UTC day and model (and owner, for an admin key), from `start`
    (or `days` back) to `end`, both included; the last 30 days by default. A job counts on
    the day it ended, if it ran."""
    query, caller = call.query, call.caller
    admin = caller.role is Role.admin
    if not admin and query.owner not in (None, caller.id):
        raise Forbidden("a user key reads only its own usage: leave out owner", param="owner")
    today = datetime.fromtimestamp(call.broker.clock() / 1000, UTC).date()
    try:
        start, end = query.span(today)
    except ValueError as exc:
        raise BadRequest(str(exc), param="start") from None
    groups = query.groups or list(_ADMIN_GROUPS if admin else _USER_GROUPS)
    entries = await call.broker.store.usage.entries(
        start=start, end=end, owner=query.owner if admin else caller.id, model=query.model
    )
    names: dict[str, str] = {}
    if UsageGroup.owner in groups:
        if admin:
            names = {key.id: key.name for key in await call.broker.store.apikeys.list()}
        else:
            names = {caller.id: caller.name}
    rows, total = summarize(entries, groups, names)
    return json_response(UsageReport(start=start, end=end, group_by=groups, data=rows, total=total))


def summarize(
    entries: Sequence[UsageEntry], groups: Sequence[UsageGroup], names: dict[str, str]
) -> tuple[list[UsageRow], UsageTotals]:
    """The entries added up per group (rows ordered by the groups' values) and overall."""
    rows: dict[tuple[object, ...], UsageRow] = {}
    total = UsageTotals()
    for entry in entries:
        fields = {
            UsageGroup.day: entry.day,
            UsageGroup.model: entry.model,
            UsageGroup.owner: entry.owner,
        }
        key = tuple(fields[g] for g in groups)
        row = rows.get(key)
        if row is None:
            row = rows[key] = UsageRow(**{g.value: fields[g] for g in groups})
            if UsageGroup.owner in groups:
                row.owner_name = names.get(entry.owner)
        for counts in (row, total):
            _add(counts, entry)
    return [rows[key] for key in sorted(rows)], total


def _add(counts: UsageTotals, entry: UsageEntry) -> None:
    counts.jobs += entry.jobs
    counts.prompt_tokens += entry.prompt_tokens
    counts.completion_tokens += entry.completion_tokens
    counts.total_tokens += entry.prompt_tokens + entry.completion_tokens
    counts.estimated_tokens += entry.estimated_tokens


endpoints = [
    Endpoint("GET", "/v1/usage", read_usage, "Jobs and tokens per day, model and owner",
             ("accounting",), Role.user, query=UsageQuery, reply=UsageReport),
]  # fmt: skip
