"""Runs the requests of `garage job submit` and collects one result line per request.

The batch lane goes through OpenAI's Batch API (`AsyncClient.run_batch`: one batch per
endpoint in the input); the interactive lane runs native jobs with `AsyncClient.map`.
Either way every request gets one line in OpenAI's batch output format, in input order,
built by `garage.contract.batch_file.output_line` wherever the broker did not write it.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from garage.client import AsyncClient, BatchItem, GarageError
from garage.contract import Batch, ErrorCode
from garage.contract.batch_file import output_line

from .batch_input import InputItem

__all__ = ["run_batches", "run_interactive", "submit_batches"]


async def submit_batches(client: AsyncClient, model: str, items: list[InputItem]) -> list[str]:
    """Uploads and starts one batch per endpoint; returns the batch ids."""
    batches = await client.submit_batch(
        model, [item.spec for item in items], custom_ids=[item.custom_id for item in items]
    )
    return [batch.id for batch in batches]


async def run_batches(
    client: AsyncClient, model: str, items: list[InputItem], *, timeout_s: float | None
) -> list[dict[str, Any]]:
    ended: dict[str, int] = {}  # batch id -> its requests that ended
    with tqdm(total=len(items), unit="req", desc="batch") as bar:

        def progress(batch: Batch) -> None:
            ended[batch.id] = batch.request_counts.completed + batch.request_counts.failed
            bar.update(sum(ended.values()) - bar.n)

        return await client.run_batch(
            model,
            [item.spec for item in items],
            custom_ids=[item.custom_id for item in items],
            timeout_s=timeout_s,
            on_progress=progress,
        )


async def run_interactive(
    client: AsyncClient, model: str, items: list[InputItem], *, timeout_s: float | None
) -> list[dict[str, Any]]:
    outcomes = await client.map(
        model, [item.spec for item in items], lane="interactive", timeout_s=timeout_s
    )
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
