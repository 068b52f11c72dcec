"""Runs the requests of `garage job submit` and collects one result line per request.

The batch lane goes through OpenAI's Batch API (`AsyncClient.run_batch`: one batch per
endpoint in the input); the interactive lane runs native jobs with `AsyncClient.map`.
Either way every request gets one line in OpenAI's batch output format, in input order,
built by `garage.contract.batch_file.output_line` wherever the broker did not write it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from garage.client import AsyncClient, BatchItem, GarageError
from garage.client._progress import Progress, progress
from garage.contract import Batch, ErrorCode
from garage.contract.batch_file import output_line

from ._common import EXIT_FAILED, say
from .batch_input import InputItem

__all__ = ["run_batches", "run_interactive", "submit_batches", "write_results"]


async def submit_batches(
    client: AsyncClient, model: str, items: list[InputItem], *, wait_for_worker: bool
) -> list[str]:
    """Uploads and starts one batch per endpoint; returns the batch ids."""
    batches = await client.submit_batch(
        model,
        [item.spec for item in items],
        custom_ids=[item.custom_id for item in items],
        wait_for_worker=wait_for_worker,
    )
    return [batch.id for batch in batches]


async def run_batches(
    client: AsyncClient,
    model: str,
    items: list[InputItem],
    *,
    timeout_s: float | None,
    wait_for_worker: bool,
) -> list[dict[str, Any]]:
    """Each batch's id is said when it starts, and what holds it up when something does;
    Ctrl-C cancels the batches (`AsyncClient.run_batch` does) and says which."""
    ended: dict[str, int] = {}  # batch id -> its requests that ended
    reasons: dict[str, str | None] = {}
    bar: Progress | None = None  # made once a batch exists, so a refusal shows no bar

    def on_progress(batch: Batch) -> None:
        nonlocal bar
        if bar is None:
            bar = progress(len(items), "batch", "req")
        if batch.id not in ended:
            bar.write(
                f"batch {batch.id}: {_requests(batch.request_counts.total)} "
                f"(`garage batch status {batch.id}` follows it)",
                file=sys.stderr,
            )
        if batch.waiting_reason and batch.waiting_reason != reasons.get(batch.id):
            bar.write(f"batch {batch.id} waits: {batch.waiting_reason}", file=sys.stderr)
        reasons[batch.id] = batch.waiting_reason
        ended[batch.id] = batch.request_counts.completed + batch.request_counts.failed
        bar.update(sum(ended.values()) - bar.n)

    try:
        return await client.run_batch(
            model,
            [item.spec for item in items],
            custom_ids=[item.custom_id for item in items],
            timeout_s=timeout_s,
            on_progress=on_progress,
            wait_for_worker=wait_for_worker,
        )
    except asyncio.CancelledError:
        if ended:
            say(f"\ncancelled batch {', '.join(ended)}")
        raise
    finally:
        if bar is not None:
            bar.close()


async def run_interactive(
    client: AsyncClient,
    model: str,
    items: list[InputItem],
    *,
    timeout_s: float | None,
    wait_for_worker: bool,
) -> list[dict[str, Any]]:
    """One native job per item (`AsyncClient.map`, which cancels them on Ctrl-C)."""
    specs = [item.spec.model_copy(update={"wait_for_worker": wait_for_worker}) for item in items]
    try:
        outcomes = await client.map(
            model, specs, lane="interactive", timeout_s=timeout_s, wait_for_worker=wait_for_worker
        )
    except asyncio.CancelledError:
        say("\ncancelled the jobs that had not finished")
        raise
    return [_line(item, outcome) for item, outcome in zip(items, outcomes, strict=True)]


def _line(item: InputItem, outcome: BatchItem) -> dict[str, Any]:
    job = outcome.job
    if job is None:  # never submitted: the broker refused it or could not be reached
        code = getattr(outcome.error, "code", None) or (
            ErrorCode.invalid_request
            if not isinstance(outcome.error, GarageError)
            else ErrorCode.unavailable
        )
        error = {"code": code, "message": str(outcome.error)}
        return output_line(None, item.custom_id, None, None, error)
    if job.error is not None:
        error = job.error.model_dump()
    elif outcome.error is not None:  # still queued or running when the wait ran out
        error = {"message": str(outcome.error)}
    else:
        error = None
    return output_line(job.id, item.custom_id, job.status, job.result, error)


def write_results(lines: list[dict[str, Any]], output_path: Path | None) -> None:
    """Writes the result lines as JSONL (stdout by default), says how many succeeded, and
    exits 1 if any did not."""
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if output_path is None:
        click.echo(text, nl=False)
    else:
        output_path.write_text(text)
    failed = sum(not _succeeded(line) for line in lines)
    say(f"{len(lines) - failed} succeeded, {failed} failed")
    if failed:
        raise SystemExit(EXIT_FAILED)


def _succeeded(line: dict[str, Any]) -> bool:
    return line["error"] is None and (line["response"] or {}).get("status_code") == 200


def _requests(count: int) -> str:
    return f"{count} request" + ("" if count == 1 else "s")
