"""Running requests through OpenAI's Batch API: inputs sent as batches (one per endpoint
they need), followed with the broker's long-poll on a batch's progress, and read back as
one result line per request, in input order.

`AsyncClient.submit_batch`, `wait_batch` and `run_batch` call into this module; the lines
are OpenAI's batch output format, and a request that never reached an output file (its
batch did not finish in time) gets its line from the same builder the broker writes with
(`garage.contract.batch_file.output_line`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from garage.contract import FINAL_BATCH_STATUSES, Batch, ErrorCode, JobCreate, Kind
from garage.contract.batch_file import KIND_URLS, URL_KINDS, output_line, parse_batch_jsonl

from ._inputs import JobInput, to_spec
from .errors import GarageError

if TYPE_CHECKING:
    from ._async import AsyncClient

__all__ = [
    "BatchRequest",
    "OnProgress",
    "batch_requests",
    "cancel_quietly",
    "read_lines",
    "requests_of",
    "submit",
    "wait",
]

logger = logging.getLogger(__name__)

OnProgress = Callable[[Batch], object]
"""Called with the batch as read, once when the wait starts and after each change of its
counts or of its `waiting_reason`."""

_WAIT_SLICE_S = 30.0  # one long-poll of GET /v1/batches/{id}?wait_s=


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: its line's custom_id and the job it becomes."""

    custom_id: str
    spec: JobCreate


def batch_requests(
    model: str,
    inputs: Sequence[JobInput],
    *,
    kind: Kind | str | None = None,
    custom_ids: Sequence[str] | None = None,
) -> list[BatchRequest]:
    """The requests for `inputs` (as `to_spec` reads them), named `item-<index>` unless
    `custom_ids` names them; raises ValueError naming the first bad input."""
    if custom_ids is None:
        custom_ids = [f"item-{index}" for index in range(len(inputs))]
    if len(custom_ids) != len(inputs):
        raise ValueError(f"{len(custom_ids)} custom_ids for {len(inputs)} inputs")
    if len(set(custom_ids)) != len(custom_ids) or not all(custom_ids):
        raise ValueError("custom_ids must be unique and non-empty")
    if not inputs:
        raise ValueError("a batch needs at least one input")
    requests = []
    for index, (custom_id, value) in enumerate(zip(custom_ids, inputs, strict=True)):
        try:
            requests.append(BatchRequest(custom_id, to_spec(model, value, kind=kind)))
        except ValueError as exc:  # pydantic's ValidationError is one too
            raise ValueError(f"input {index} ({custom_id}): {exc}") from exc
    return requests


async def submit(
    client: AsyncClient,
    requests: Sequence[BatchRequest],
    *,
    metadata: dict[str, str] | None = None,
) -> list[Batch]:
    """Uploads one input file per endpoint the requests need and creates a batch of each.
    Only a request's body travels: the Batch API has no lane, deadline or metadata per line."""
    batches = []
    for kind in Kind:
        group = [request for request in requests if request.spec.kind is kind]
        if not group:
            continue
        url = KIND_URLS[kind]
        text = "".join(
            json.dumps(
                {
                    "custom_id": request.custom_id,
                    "method": "POST",
                    "url": url,
                    "body": {**request.spec.request, "model": request.spec.model},
                }
            )
            + "\n"
            for request in group
        )
        try:
            uploaded = await client.upload_batch_file(f"garage-{kind.value}.jsonl", text)
            batches.append(await client.create_batch(uploaded.id, url, metadata=metadata))
        except asyncio.CancelledError:  # not all of them started: none is left running
            await cancel_quietly(client, [batch.id for batch in batches])
            raise
    return batches


async def wait(
    client: AsyncClient,
    batch_id: str,
    *,
    timeout_s: float | None = None,
    on_progress: OnProgress | None = None,
) -> Batch:
    """The batch once it reached a final status, or as it is when `timeout_s` ran out.
    Each request is a long-poll that the broker answers when the counts change."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    batch = await client.batch(batch_id)
    if on_progress is not None:
        on_progress(batch)
    while batch.status not in FINAL_BATCH_STATUSES:
        remaining = _WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            break
        done, reason = _ended(batch), batch.waiting_reason
        batch = await client.batch(batch_id, wait_s=min(remaining, _WAIT_SLICE_S), after_done=done)
        if on_progress is not None and (_ended(batch), batch.waiting_reason) != (done, reason):
            on_progress(batch)
    return batch


def requests_of(input_file: str) -> list[tuple[str, Kind]]:
    """Each request of a batch input file (JSONL, already checked by the broker) as its
    custom_id and kind, in the file's order."""
    return [(line.custom_id, line.kind) for line in parse_batch_jsonl(input_file)]


async def cancel_quietly(client: AsyncClient, batch_ids: Sequence[str]) -> None:
    """Cancels the batches, logging (not raising) what could not be cancelled: the caller
    is on its way out already."""
    for batch_id in batch_ids:
        try:
            await client.cancel_batch(batch_id)
        except GarageError as exc:
            logger.warning("could not cancel batch %s: %s", batch_id, exc)


async def read_lines(
    client: AsyncClient,
    batches: Sequence[Batch],
    requests: Sequence[tuple[str, Kind]],
    *,
    timeout_s: float | None,
) -> list[dict[str, Any]]:
    """One line per request (custom_id and kind) in input order: from the batches' output
    and error files, or built here for a request whose batch did not finish."""
    found: dict[str, dict[str, Any]] = {}
    batch_of_kind: dict[Kind, Batch] = {}
    for batch in batches:
        batch_of_kind[URL_KINDS[batch.endpoint]] = batch
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                for raw in (await client.file_text(file_id)).splitlines():
                    if raw.strip():
                        line = json.loads(raw)
                        found[line["custom_id"]] = line
    lines = []
    for custom_id, kind in requests:
        line = found.get(custom_id)
        if line is None:
            batch = batch_of_kind[kind]
            if batch.status in FINAL_BATCH_STATUSES:
                error = {"code": ErrorCode.job_lost, "message": f"not in batch {batch.id}'s files"}
            else:
                error = {
                    "code": ErrorCode.unfinished,
                    "message": f"not finished within {timeout_s} s; see batch {batch.id}",
                }
            line = output_line(None, custom_id, None, None, error)
        lines.append(line)
    return lines


def _ended(batch: Batch) -> int:
    return batch.request_counts.completed + batch.request_counts.failed
