"""`garage usage`: jobs and tokens per UTC day and model; per owner with an admin key."""

from __future__ import annotations

import re
from datetime import date

import click

from garage.client import AsyncClient
from garage.contract import UsageGroup, UsageReport, UsageTotals

from ._common import broker_options, print_json, print_rows, run_async

__all__ = ["usage"]

_DAYS_BACK = re.compile(r"^(\d{1,4})d$")


class UtcDay(click.ParamType):
    """A UTC day, YYYY-MM-DD; with `days_back`, also `Nd`: the last N days (an int)."""

    name = "day"

    def __init__(self, *, days_back: bool = False) -> None:
        self.days_back = days_back

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> date | int:
        if isinstance(value, date | int):
            return value
        text = str(value).strip()
        if self.days_back and (found := _DAYS_BACK.match(text)) and int(found.group(1)) >= 1:
            return int(found.group(1))  # counted back from the broker's today, not ours
        try:
            return date.fromisoformat(text)
        except ValueError:
            wanted = "YYYY-MM-DD or a number of days like 7d" if self.days_back else "YYYY-MM-DD"
            self.fail(f"{text!r} is not {wanted}", param, ctx)


@click.command("usage")
@click.option(
    "--since",
    type=UtcDay(days_back=True),
    default=None,
    help="First UTC day, or 7d for the last 7 days [30d].",
)
@click.option("--until", type=UtcDay(), default=None, help="Last UTC day, included [today].")
@click.option("--model", default=None, help="Only this model.")
@click.option("--owner", default=None, help="Only this key id's usage (an admin key).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@broker_options
@run_async
async def usage(
    since: date | int | None,
    until: date | None,
    model: str | None,
    owner: str | None,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Show the jobs and tokens your key used, per UTC day and model.

    An admin key sees every key's usage, per owner. A job counts on the day it ended,
    if it ran; ESTIMATED is the part of the tokens counted from the text's length, where
    neither the backend nor its tokenizer gave a count (docs/accounting.md).

    \b
    Examples:
      garage usage
      garage usage --since 7d --model llama3
      garage usage --since 2025-01-01 --until 2025-01-31 --json
    """
    async with AsyncClient(url, api_key) as client:
        report = await client.usage(
            start=since if isinstance(since, date) else None,
            days=since if isinstance(since, int) else None,
            end=until,
            model=model,
            owner=owner,
        )
    if as_json:
        print_json(report)
        return
    print_report(report)


_LABELS = {UsageGroup.owner: "OWNER", UsageGroup.day: "DAY", UsageGroup.model: "MODEL"}
_COUNTS = ("JOBS", "PROMPT", "COMPLETION", "TOTAL", "ESTIMATED")


def print_report(report: UsageReport) -> None:
    header = [_LABELS[g] for g in report.group_by] + list(_COUNTS)
    rows = []
    for row in report.data:
        cells = {
            UsageGroup.owner: _owner(row.owner, row.owner_name),
            UsageGroup.day: str(row.day),
            UsageGroup.model: row.model or "",
        }
        rows.append([cells[g] for g in report.group_by] + _counts(row))
    blank = [""] * (len(report.group_by) - 1)
    rows.append(["TOTAL", *blank, *_counts(report.total)])
    click.echo(f"{report.start} to {report.end} (UTC)")
    print_rows(header, rows)


def _counts(totals: UsageTotals) -> list[str]:
    return [
        str(totals.jobs),
        str(totals.prompt_tokens),
        str(totals.completion_tokens),
        str(totals.total_tokens),
        str(totals.estimated_tokens),
    ]


def _owner(owner: str | None, name: str | None) -> str:
    return f"{name} ({owner})" if name else owner or ""
