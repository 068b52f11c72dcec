"""`garage job submit|status|result|cancel|list`: submit a batch, look after jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from garage.client import AsyncClient
from garage.contract import JobStatus, Lane

from ._common import EXIT_USAGE, broker_options, fail, print_json, print_rows, run_async
from .batch_input import InputError, InputItem, read_input
from .batch_run import run_batches, run_interactive, submit_batches, write_results

__all__ = ["job"]


@click.group()
def job() -> None:
    """Submit requests and look after jobs on the broker (batches: `garage batch`)."""


def _not_a_batch(job_id: str, command: str) -> None:
    if job_id.startswith("batch_"):
        fail(f"{job_id} is a batch: see `garage batch {command} {job_id}`", EXIT_USAGE)


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
@click.option(
    "--wait-for-worker",
    is_flag=True,
    help="Queue the requests even when no live worker serves the model now "
    "(default: exit 6 at once).",
)
@broker_options
def submit(
    model: str,
    input_path: Path,
    output_path: Path | None,
    lane: str,
    no_wait: bool,
    timeout_s: float | None,
    wait_for_worker: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Run every request of an input file; write the results as JSONL in input order.

    The batch lane (the default) goes through the broker's Batch API; results are lines of
    OpenAI's batch output format. Exit code 0 when all succeeded, 1 when any failed (their
    lines carry the error), 2 when the input is malformed (then nothing is submitted),
    6 when no live worker serves the model (nothing is submitted), 130 on Ctrl-C (what
    was submitted is cancelled).

    \b
    Examples:
      echo '["What is a GPU?", "What is NAT?"]' > prompts.json
      garage job submit -m llama3 -i prompts.json -o results.jsonl
      garage job submit -m llama3 -i requests.jsonl --no-wait   # prints the batch id
    """
    try:
        items = read_input(input_path, model, Lane(lane))
    except InputError as exc:
        fail(str(exc), EXIT_USAGE)
    args = {"model": model, "items": items, "lane": lane, "wait_for_worker": wait_for_worker}
    broker = {"url": url, "api_key": api_key}
    if no_wait:
        for submitted_id in run_async(_submit_only)(**args, **broker):
            click.echo(submitted_id)
        return
    write_results(run_async(_run)(**args, timeout_s=timeout_s, **broker), output_path)


async def _submit_only(
    model: str,
    items: list[InputItem],
    lane: str,
    wait_for_worker: bool,
    url: str | None,
    api_key: str | None,
) -> list[str]:
    """Batch ids for the batch lane, job ids for the interactive lane."""
    async with AsyncClient(url, api_key) as client:
        if lane == Lane.batch:
            return await submit_batches(client, model, items, wait_for_worker=wait_for_worker)
        if not wait_for_worker:
            await client.require_served(model)
        update = {"wait_for_worker": wait_for_worker}
        return [
            (await client.submit_spec(item.spec.model_copy(update=update))).id for item in items
        ]


async def _run(
    model: str,
    items: list[InputItem],
    lane: str,
    wait_for_worker: bool,
    timeout_s: float | None,
    url: str | None,
    api_key: str | None,
) -> list[dict[str, Any]]:
    async with AsyncClient(url, api_key) as client:
        run = run_batches if lane == Lane.batch else run_interactive
        return await run(client, model, items, timeout_s=timeout_s, wait_for_worker=wait_for_worker)


@job.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole job as JSON.")
@broker_options
@run_async
async def status(job_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Show a job's status.

    \b
    Example:
      garage job status job_01M8YAXJ53X1G6RAB0N9V4YQ8W --json
    """
    _not_a_batch(job_id, "status")
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
    """Wait for a job and print its result as JSON (exit 1 if it failed).

    \b
    Example:
      garage job result job_01M8YAXJ53X1G6RAB0N9V4YQ8W --timeout 60
    """
    _not_a_batch(job_id, "result")
    async with AsyncClient(url, api_key) as client:
        done = await client.wait(job_id, timeout_s=timeout_s)
    print_json(done.result)


@job.command("cancel")
@click.argument("job_id")
@broker_options
@run_async
async def cancel(job_id: str, url: str | None, api_key: str | None) -> None:
    """Cancel a queued or running job.

    \b
    Example:
      garage job cancel job_01M8YAXJ53X1G6RAB0N9V4YQ8W
    """
    _not_a_batch(job_id, "cancel")
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
    """List your jobs, newest first.

    \b
    Examples:
      garage job list --status running
      garage job list --model llama3 --limit 100 --json
    """
    async with AsyncClient(url, api_key) as client:
        page = await client.list(limit=limit, status=status_, model=model)
    if as_json:
        print_json(page)
        return
    rows = [
        (
            item.id,
            item.model,
            item.lane.value,
            item.status.value + (f" (attempt {item.attempt})" if item.attempt > 1 else ""),
            item.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        )
        for item in page.data
    ]
    print_rows(("ID", "MODEL", "LANE", "STATUS", "CREATED"), rows)
