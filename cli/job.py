"""`garage job submit|status|result|cancel|list`: submit a batch, look after jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from garage.client import AsyncClient
from garage.contract import JobStatus, Lane

from ._common import EXIT_FAILED, EXIT_USAGE, broker_options, fail, print_json, run_async
from .batch_input import InputError, InputItem, read_input
from .batch_run import run_batches, run_interactive, submit_batches

__all__ = ["job"]


@click.group()
def job() -> None:
    """Look after jobs on the broker."""


@job.command("submit")
@click.option("-m", "--model", required=True, help="Model every request goes to.")
@click.option(
    "-i",
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    required=True,
    help="A JSON array of prompts or of request bodies, or JSONL in OpenAI's batch "
    "format (custom_id, method, url, body).",
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the results as JSONL, in input order (default: stdout).",
)
@click.option(
    "--lane",
    type=click.Choice([lane.value for lane in Lane]),
    default="batch",
    show_default=True,
    help="batch: through the Batch API, yielding to interactive work on the same model; "
    "interactive: one native job each, ahead of batch work.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Submit and exit, printing the batch ids (batch lane) or job ids.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="Give up waiting after this many seconds (unfinished items get an error).",
)
@broker_options
def submit(
    model: str,
    input_path: Path,
    output_path: Path | None,
    lane: str,
    no_wait: bool,
    timeout_s: float | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Run every request of an input file; write the results as JSONL in input order.

    The batch lane (the default) goes through the broker's Batch API; results are lines of
    OpenAI's batch output format. Exit code 0 when all succeeded, 1 when any failed (their
    lines carry the error), 2 when the input is malformed (then nothing is submitted)."""
    try:
        items = read_input(input_path, model, Lane(lane))
    except InputError as exc:
        fail(str(exc), EXIT_USAGE)
    if no_wait:
        for submitted_id in run_async(_submit_only)(model, items, lane, url, api_key):
            click.echo(submitted_id)
        return
    lines = run_async(_run)(model, items, lane, timeout_s, url, api_key)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if output_path is None:
        click.echo(text, nl=False)
    else:
        output_path.write_text(text)
    failed = sum(not _succeeded(line) for line in lines)
    click.echo(f"{len(lines) - failed} succeeded, {failed} failed", err=True)
    if failed:
        raise SystemExit(EXIT_FAILED)


def _succeeded(line: dict[str, Any]) -> bool:
    return line["error"] is None and (line["response"] or {}).get("status_code") == 200


async def _submit_only(
    model: str, items: list[InputItem], lane: str, url: str | None, api_key: str | None
) -> list[str]:
    """Batch ids for the batch lane, job ids for the interactive lane."""
    async with AsyncClient(url, api_key) as client:
        if lane == Lane.batch:
            return await submit_batches(client, model, items)
        return [(await client.submit_spec(item.spec)).id for item in items]


async def _run(
    model: str,
    items: list[InputItem],
    lane: str,
    timeout_s: float | None,
    url: str | None,
    api_key: str | None,
) -> list[dict[str, Any]]:
    async with AsyncClient(url, api_key) as client:
        if lane == Lane.batch:
            return await run_batches(client, model, items, timeout_s=timeout_s)
        return await run_interactive(client, model, items, timeout_s=timeout_s)


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
    table = Table()
    table.add_column("id", no_wrap=True, min_width=30)  # whole, so it can be copied
    for name in ("model", "lane", "status", "attempt", "created"):
        table.add_column(name)
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
