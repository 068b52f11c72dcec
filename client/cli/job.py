"""`garage job submit|status|result|cancel|list`: submit a batch, look after jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .._async import AsyncClient
from .._batch import BatchItem
from ..schemas import JobStatus, Lane
from ._common import EXIT_FAILED, EXIT_USAGE, broker_options, fail, print_json, run_async
from .batch_input import InputError, InputItem, read_input

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
    help="batch yields to interactive work on the same model.",
)
@click.option("--no-wait", is_flag=True, help="Submit, print one job id per line, and exit.")
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

    Exit code 0 when all succeeded, 1 when any failed (their lines carry the error),
    2 when the input is malformed (then nothing is submitted)."""
    try:
        items = read_input(input_path, model, Lane(lane))
    except InputError as exc:
        fail(str(exc), EXIT_USAGE)
    if no_wait:
        for job_id in run_async(_submit_all)(items, url, api_key):
            click.echo(job_id)
        return
    outcomes = run_async(_run_all)(model, items, lane, timeout_s, url, api_key)
    lines = [
        json.dumps(_output_line(item, outcome))
        for item, outcome in zip(items, outcomes, strict=True)
    ]
    text = "\n".join(lines) + "\n"
    if output_path is None:
        click.echo(text, nl=False)
    else:
        output_path.write_text(text)
    failed = sum(not outcome.ok for outcome in outcomes)
    click.echo(f"{len(items) - failed} succeeded, {failed} failed", err=True)
    if failed:
        raise SystemExit(EXIT_FAILED)


async def _submit_all(items: list[InputItem], url: str | None, api_key: str | None) -> list[str]:
    async with AsyncClient(url, api_key) as client:
        return [(await client.submit_spec(item.spec)).id for item in items]


async def _run_all(
    model: str,
    items: list[InputItem],
    lane: str,
    timeout_s: float | None,
    url: str | None,
    api_key: str | None,
) -> list[BatchItem]:
    async with AsyncClient(url, api_key) as client:
        return await client.map(
            model, [item.spec for item in items], lane=lane, timeout_s=timeout_s
        )


def _output_line(item: InputItem, outcome: BatchItem) -> dict[str, Any]:
    """One result in OpenAI's batch output shape, with the garage job beside it."""
    job = outcome.job
    line: dict[str, Any] = {
        "custom_id": item.custom_id,
        "job_id": job.id if job else None,
        "status": job.status.value if job else "not_submitted",
        "response": None,
        "error": None,
    }
    if outcome.ok and job is not None:
        line["response"] = {"status_code": 200, "request_id": job.id, "body": job.result}
    else:
        error = job.error if job is not None and job.error is not None else None
        line["error"] = {
            "code": (error.code if error else None) or type(outcome.error).__name__,
            "message": error.message if error else str(outcome.error),
        }
    return line


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
