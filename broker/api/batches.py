"""OpenAI's Batch API: a JSONL file of requests run as batch-lane jobs.

The whole input file is checked, line by line, before any job is queued; a bad line is a
400 that names it. Counts are live; the output and error files appear once every job has
ended (see `broker/store/batches.py` and `broker/finalizer.py`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from garage.contract import (
    MAX_BATCH_REQUESTS,
    Batch,
    BatchCreate,
    BatchList,
    Role,
)
from garage.contract.batch_file import BatchLineError, parse_batch_jsonl, to_job

from ..auth import Principal
from ..deps import Broker, BrokerDep, Caller
from ..errors import BadRequest, NotFound
from ..responses import model_response
from .files import own_file

__all__ = ["router"]

router = APIRouter(prefix="/v1/batches", tags=["batches"])

BatchId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

_WINDOW_S = 24 * 3600.0


async def _own_batch(broker: Broker, caller: Principal, batch_id: str) -> Batch:
    caller.require(Role.user)
    found = await broker.store.batches.get(batch_id)
    if found is None or not caller.can_see(found[0]):
        raise NotFound(f"no batch {batch_id!r}", param="batch_id")
    return found[1]


@router.post("", response_model=Batch)
async def create_batch(body: BatchCreate, broker: BrokerDep, caller: Caller) -> Response:
    """Checks every line of the input file, then queues one batch-lane job per line."""
    described = await own_file(broker, caller, body.input_file_id)
    if described.purpose != "batch":
        raise BadRequest("the input file's purpose must be 'batch'", param="input_file_id")
    text = await broker.store.files.text(body.input_file_id) or ""
    try:
        lines = parse_batch_jsonl(text, endpoint=body.endpoint, max_requests=MAX_BATCH_REQUESTS)
        specs = []
        for line in lines:
            model = line.body.get("model")
            if not isinstance(model, str) or not model:
                raise BatchLineError(line.line, "body.model must name a model", "model")
            specs.append(to_job(line, model, start_timeout_s=_WINDOW_S))
    except BatchLineError as exc:
        raise BadRequest(
            f"{described.filename}: {exc}", code="invalid_batch_line", param=exc.param
        ) from exc
    batch = await broker.store.batches.create(caller.id, body, specs)
    for spec in specs:
        broker.metrics.submitted.labels(spec.model, spec.lane.value).inc()
    return model_response(batch)


@router.get("", response_model=BatchList)
async def list_batches(
    broker: BrokerDep,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    caller.require(Role.user)
    batches, more = await broker.store.batches.list(caller.id, limit=limit, after=after)
    return model_response(
        BatchList(
            data=batches,
            first_id=batches[0].id if batches else None,
            last_id=batches[-1].id if batches else None,
            has_more=more,
        )
    )


@router.get("/{batch_id}", response_model=Batch)
async def get_batch(batch_id: BatchId, broker: BrokerDep, caller: Caller) -> Response:
    """The batch, with its request counts as of now."""
    return model_response(await _own_batch(broker, caller, batch_id))


@router.post("/{batch_id}/cancel", response_model=Batch)
async def cancel_batch(batch_id: BatchId, broker: BrokerDep, caller: Caller) -> Response:
    """Cancels what has not run; what finished still goes to the output file."""
    await _own_batch(broker, caller, batch_id)
    await broker.store.batches.cancel(batch_id)
    return model_response(await _own_batch(broker, caller, batch_id))
