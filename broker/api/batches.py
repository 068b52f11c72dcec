"""OpenAI's Batch API: a JSONL file of requests run as batch-lane jobs.

The whole input file is checked, line by line, before any job is queued; a bad line is a
400 that names it. Counts are live; the output and error files appear once every job has
ended (see `broker/store/batches.py` and `broker/finalizer.py`). Reading a batch can wait
for its progress (`?wait_s=&after_done=`), so a caller follows it without polling.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from garage.contract import (
    MAX_BATCH_REQUESTS,
    Batch,
    BatchCreate,
    BatchList,
    BatchListQuery,
    BatchWaitQuery,
    ErrorCode,
    Role,
)
from garage.contract.batch_file import BatchLineError, parse_batch_jsonl, to_job

from ..errors import BadRequest, NotFound
from ..routing import Call, Endpoint, json_response

__all__ = ["endpoints"]

_WINDOW_S = 24 * 3600.0


async def _own_batch(call: Call[Any, Any]) -> Batch:
    batch_id = call.path["batch_id"]
    found = await call.broker.store.batches.get(batch_id)
    if found is None or not call.caller.can_see(found[0]):
        raise NotFound(f"no batch {batch_id!r}", param="batch_id")
    return found[1]


async def create_batch(call: Call[BatchCreate, None]) -> Response:
    """Checks every line of the input file, then queues one batch-lane job per line."""
    body, store = call.body, call.broker.store
    found = await store.files.get(body.input_file_id)
    if found is None or not call.caller.can_see(found[0]):
        raise NotFound(f"no file {body.input_file_id!r}", param="input_file_id")
    described = found[1]
    if described.purpose != "batch":
        raise BadRequest("the input file's purpose must be 'batch'", param="input_file_id")
    text = await store.files.text(body.input_file_id) or ""
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
            f"{described.filename}: {exc}", code=ErrorCode.invalid_batch_line, param=exc.param
        ) from exc
    jobs = call.broker.jobs
    batch = await jobs.create_batch(call.caller, body, specs)
    return json_response((await jobs.explained([batch]))[0])


async def list_batches(call: Call[None, BatchListQuery]) -> Response:
    batches, more = await call.broker.store.batches.list(
        call.caller.id, limit=call.query.limit, after=call.query.after
    )
    batches = await call.broker.jobs.explained(batches)
    return json_response(
        BatchList(
            data=batches,
            first_id=batches[0].id if batches else None,
            last_id=batches[-1].id if batches else None,
            has_more=more,
        )
    )


async def get_batch(call: Call[None, BatchWaitQuery]) -> Response:
    """The batch with its request counts; with `wait_s`, once more than `after_done` of its
    requests ended or it reached a final status, or after `wait_s`, whichever comes first."""
    batch = await _own_batch(call)
    query = call.query
    jobs = call.broker.jobs
    batch = await jobs.wait_batch(batch, wait_s=query.wait_s, after_done=query.after_done)
    return json_response((await jobs.explained([batch]))[0])


async def cancel_batch(call: Call[None, None]) -> Response:
    """Cancels what has not run; what finished still goes to the output file."""
    batch = await _own_batch(call)
    await call.broker.store.batches.cancel(batch.id)
    return json_response(await _own_batch(call))


_TAGS = ("batches",)
endpoints = [
    Endpoint("POST", "/v1/batches", create_batch, "Create a batch from an uploaded file", _TAGS,
             Role.user, body=BatchCreate, reply=Batch),
    Endpoint("GET", "/v1/batches", list_batches, "List your batches", _TAGS, Role.user,
             query=BatchListQuery, reply=BatchList),
    Endpoint("GET", "/v1/batches/{batch_id}", get_batch,
             "Read a batch (optionally wait for its progress)", _TAGS, Role.user,
             query=BatchWaitQuery, reply=Batch),
    Endpoint("POST", "/v1/batches/{batch_id}/cancel", cancel_batch, "Cancel a batch", _TAGS,
             Role.user, reply=Batch),
]  # fmt: skip
