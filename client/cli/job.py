"""`garage job status|result|cancel|list`: look after jobs."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from .._async import AsyncClient
from ..schemas import JobStatus
from ._common import broker_options, print_json, run_async

__all__ = ["job"]


@click.group()
def job() -> None:
    """Look after jobs on the broker."""


@job.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole job as JSON.")
@broker_options
@run_async
async def status(job_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Show a job's status."""
    async with AsyncClient(url, api_key) as client:
        found = await client.get(job_id)
    if as_json:
        print_json(found)
    else:
        error = f"  {found.error.message}" if found.error else ""
        click.echo(f"{found.id}  {found.status.value}  attempt {found.attempt}{error}")


@job.command("result")
@click.argument("job_id")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="Wait at most this many seconds (default: until it ends).",
)
@broker_options
@run_async
async def result(
    job_id: str, timeout_s: float | None, url: str | None, api_key: str | None
) -> None:
    """Wait for a job and print its result as JSON (exit 1 if it failed)."""
    async with AsyncClient(url, api_key) as client:
        done = await client.wait(job_id, timeout_s=timeout_s)
    print_json(done.result)


@job.command("cancel")
@click.argument("job_id")
@broker_options
@run_async
async def cancel(job_id: str, url: str | None, api_key: str | None) -> None:
    """Cancel a queued or running job."""
    async with AsyncClient(url, api_key) as client:
        cancelled = await client.cancel(job_id)
    click.echo(f"{cancelled.id}  {cancelled.status.value}")


@job.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--status", "status_", type=click.Choice([s.value for s in JobStatus]))
@click.option("--model", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@broker_options
@run_async
async def list_jobs(
    limit: int,
    status_: str | None,
    model: str | None,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """List your jobs, newest first."""
    async with AsyncClient(url, api_key) as client:
        page = await client.list(limit=limit, status=status_, model=model)
    if as_json:
        print_json(page)
        return
    table = Table("id", "model", "lane", "status", "attempt", "created")
    for item in page.data:
        table.add_row(
            item.id,
            item.model,
            item.lane.value,
            item.status.value,
            str(item.attempt),
            item.created_at.isoformat(timespec="seconds"),
        )
    Console().print(table)
