"""`garage batch list|status|result|cancel`: batches made by `garage job submit` or any
client of the Batch API."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from garage.client import AsyncClient
from garage.client._progress import progress
from garage.contract import Batch, BatchStatus

from ._common import broker_options, print_json, print_rows, run_async
from .batch_run import write_results

__all__ = ["batch"]


@click.group()
def batch() -> None:
    """Look after batches (OpenAI's Batch API) on the broker."""


@batch.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@broker_options
@run_async
async def list_batches(limit: int, as_json: bool, url: str | None, api_key: str | None) -> None:
    """List your batches, newest first.

    \b
    Example:
      garage batch list --limit 5
    """
    async with AsyncClient(url, api_key) as client:
        page = await client.batches(limit=limit)
    if as_json:
        print_json(page)
        return
    rows = []
    for item in page.data:
        counts = item.request_counts
        done = f"{counts.completed + counts.failed}/{counts.total}"
        rows.append(
            (
                item.id,
                item.status.value,
                done + (f" ({counts.failed} failed)" if counts.failed else ""),
                _when(item.created_at),
            )
        )
    print_rows(("ID", "STATUS", "DONE", "CREATED"), rows)


@batch.command("status")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole batch as JSON.")
@broker_options
@run_async
async def status(batch_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Show a batch's status and counts, and what holds it up if anything does.

    \b
    Example:
      garage batch status batch_01M8YAXJ536V3ZHYPM0ZMYEW5D
    """
    async with AsyncClient(url, api_key) as client:
        found = await client.batch(batch_id)
    if as_json:
        print_json(found)
        return
    counts = found.request_counts
    click.echo(
        f"{found.id}  {found.status.value}  {counts.completed} completed, {counts.failed} "
        f"failed of {counts.total}"
    )
    if found.waiting_reason:
        click.echo(f"  waits: {found.waiting_reason}")


@batch.command("result")
@click.argument("batch_id")
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the results as JSONL, in input order (default: stdout).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="Wait at most this many seconds (default: until the batch ends).",
)
@broker_options
@run_async
async def result(
    batch_id: str,
    output_path: Path | None,
    timeout_s: float | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Wait for a batch and write one result line per request, in input order (OpenAI's
    batch output format). Exit 1 if any request failed or did not finish.

    \b
    Example:
      garage batch result batch_01M8YAXJ536V3ZHYPM0ZMYEW5D -o results.jsonl
    """
    async with AsyncClient(url, api_key) as client:
        first = await client.batch(batch_id)
        bar = progress(first.request_counts.total, "batch", "req")

        def on_progress(found: Batch) -> None:
            counts = found.request_counts
            bar.update(counts.completed + counts.failed - bar.n)

        try:
            lines = await client.batch_lines(batch_id, timeout_s=timeout_s, on_progress=on_progress)
        finally:
            bar.close()
    write_results(lines, output_path)


@batch.command("cancel")
@click.argument("batch_id")
@broker_options
@run_async
async def cancel(batch_id: str, url: str | None, api_key: str | None) -> None:
    """Cancel what of a batch has not run; what finished stays in its output.

    \b
    Example:
      garage batch cancel batch_01M8YAXJ536V3ZHYPM0ZMYEW5D
    """
    async with AsyncClient(url, api_key) as client:
        found = await client.cancel_batch(batch_id)
        if found.status is BatchStatus.cancelling:
            found = await client.wait_batch(batch_id, timeout_s=30)
    click.echo(f"{found.id}  {found.status.value}")


def _when(stamp: int) -> str:
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
