"""`garage contributions`: the leaderboard of what rigs gave the pool, per owner and key."""

from __future__ import annotations

from datetime import date

import click

from garage.client import AsyncClient
from garage.contract import ContributionGroup, ContributionReport, ContributionTotals

from ._common import broker_options, print_json, print_rows, run_async
from .usage import UtcDay

__all__ = ["contributions", "print_report"]


@click.command("contributions")
@click.option(
    "--since",
    type=UtcDay(days_back=True),
    default=None,
    help="First UTC day, or 7d for the last 7 days [30d].",
)
@click.option("--until", type=UtcDay(), default=None, help="Last UTC day, included [today].")
@click.option(
    "--by",
    "group_by",
    default=None,
    metavar="GROUPS",
    callback=lambda ctx, param, value: _groups(value),
    help="Rows per these, comma-separated: owner, key, worker, day [owner,key].",
)
@click.option("--key", default=None, metavar="KEY_ID", help="Only this worker key's.")
@click.option("--owner", default=None, metavar="KEY_ID", help="Only the keys this user key owns.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@broker_options
@run_async
async def contributions(
    since: date | int | None,
    until: date | None,
    group_by: list[ContributionGroup] | None,
    key: str | None,
    owner: str | None,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Show what each worker key (and its owner) gave the pool: jobs completed, the time
    they ran, tokens generated and points, highest first.

    Points are the broker's rule: busy seconds (each job's lease to its result) times
    one rate plus tokens times another; a failed, cancelled or fenced attempt earns
    nothing (docs/accounting.md). Any user key sees every worker key; a worker key sees
    its own. ESTIMATED is the part of the tokens counted from the text's length.

    \b
    Examples:
      garage contributions
      garage contributions --since 7d --by owner
      garage contributions --since 2025-01-01 --until 2025-01-31 --by day,key --json
    """
    async with AsyncClient(url, api_key) as client:
        report = await client.contributions(
            start=since if isinstance(since, date) else None,
            days=since if isinstance(since, int) else None,
            end=until,
            key=key,
            owner=owner,
            group_by=group_by,
        )
    if as_json:
        print_json(report)
        return
    print_report(report)


def _groups(value: str | None) -> list[ContributionGroup] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    for name in names:
        if name not in ContributionGroup.__members__:
            raise click.BadParameter(f"unknown group {name!r}; use owner, key, worker or day")
    return [ContributionGroup(name) for name in names]


_LABELS = {
    ContributionGroup.owner: "OWNER",
    ContributionGroup.key: "KEY",
    ContributionGroup.worker: "WORKER",
    ContributionGroup.day: "DAY",
}
_COUNTS = ("JOBS", "BUSY", "TOKENS", "ESTIMATED", "POINTS")


def print_report(report: ContributionReport) -> None:
    header = [_LABELS[g] for g in report.group_by] + list(_COUNTS)
    rows = []
    for row in report.data:
        cells = {
            ContributionGroup.owner: _named(row.owner, row.owner_name),
            ContributionGroup.key: _named(row.key, row.key_name),
            ContributionGroup.worker: row.worker or "",
            ContributionGroup.day: str(row.day),
        }
        rows.append([cells[g] for g in report.group_by] + _counts(row))
    blank = [""] * (len(report.group_by) - 1)
    rows.append(["TOTAL", *blank, *_counts(report.total)])
    rule = report.rule
    click.echo(
        f"{report.start} to {report.end} (UTC); points = busy seconds x "
        f"{rule.points_per_busy_s:g} + tokens / 1000 x {rule.points_per_1k_tokens:g}"
    )
    print_rows(header, rows)


def busy(seconds: float) -> str:
    """H:MM:SS, the hours not wrapped at a day."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _counts(totals: ContributionTotals) -> list[str]:
    return [
        str(totals.jobs),
        busy(totals.busy_s),
        str(totals.completion_tokens),
        str(totals.estimated_tokens),
        f"{totals.points:.1f}",
    ]


def _named(key_id: str | None, name: str | None) -> str:
    if key_id is None:
        return "-"
    return f"{name} ({key_id})" if name else key_id
