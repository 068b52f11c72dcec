"""Native jobs: submit, read (optionally waiting for the end), list, cancel, stream events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from garage.contract import (
    MAX_WAIT_S,
    ErrorCode,
    Job,
    JobCreate,
    JobEventsQuery,
    JobList,
    JobListQuery,
    JobWaitQuery,
    Role,
)

from ..errors import BadRequest, Unavailable
from ..routing import Call, Endpoint, HeaderDoc, json_response
from ..store.events import is_event_id

__all__ = ["endpoints"]

_PING_S = 15.0  # a comment line this often keeps idle streams open through proxies
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)")


def _preferred_wait_s(prefer: str | None) -> float:
    """`Prefer: wait=N` (RFC 7240): hold the submit up to N seconds for the result."""
    found = _PREFER_WAIT.search(prefer or "")
    return min(float(found.group(1)), MAX_WAIT_S) if found else 0.0


async def submit_job(call: Call[JobCreate, None]) -> Response:
    """Queues a job. The same `Idempotency-Key` from the same owner returns the same job
    (200 instead of 201). With `Prefer: wait=N` the answer waits up to N seconds for the end."""
    idempotency_key = call.header("Idempotency-Key", max_length=255)
    wait_s = _preferred_wait_s(call.header("Prefer", max_length=200))
    try:
        submitted = await call.broker.jobs.submit_and_wait(
            call.caller, call.body, wait_s=wait_s, idempotency_key=idempotency_key
        )
    except Unavailable as exc:
        if exc.code is ErrorCode.model_not_served:  # only this door has the way round it
            exc.message += "; set wait_for_worker to queue the job anyway, or use the batch lane"
        raise
    return json_response(
        submitted.job,
        status_code=201 if submitted.created else 200,
        headers={"Preference-Applied": f"wait={wait_s:g}"} if wait_s else None,
    )


async def get_job(call: Call[None, JobWaitQuery]) -> Response:
    return json_response(
        await call.broker.jobs.get(call.caller, call.path["job_id"], wait_s=call.query.wait_s)
    )


async def list_jobs(call: Call[None, JobListQuery]) -> Response:
    """Your jobs, newest first (an admin sees everyone's)."""
    query = call.query
    jobs, more = await call.broker.jobs.list(
        call.caller, limit=query.limit, after=query.after, status=query.status, model=query.model
    )
    return json_response(JobList(data=jobs, has_more=more, last_id=jobs[-1].id if jobs else None))


async def cancel_job(call: Call[None, None]) -> Response:
    """Cancels a queued or running job; a running job's worker learns on its next report."""
    return json_response(await call.broker.jobs.cancel(call.caller, call.path["job_id"]))


async def job_events(call: Call[None, JobEventsQuery]) -> Response:
    """The job's events as SSE: status, delta, restart, done, error. Resumable with
    `Last-Event-ID` (or `?after=`); ends after `done` or `error`."""
    job_id = call.path["job_id"]
    await call.broker.jobs.visible(call.caller, job_id)
    position = call.header("Last-Event-ID", max_length=64) or call.query.after
    if position is not None and not is_event_id(position):
        raise BadRequest(f"not an event id: {position!r}", param="Last-Event-ID")

    async def events() -> AsyncIterator[Any]:
        async for event in call.broker.jobs.follow(job_id, after=position):
            yield ServerSentEvent(data=event.data, event=event.type, id=event.id)

    return EventSourceResponse(events(), ping=_PING_S)


_TAGS = ("jobs",)
endpoints = [
    Endpoint("POST", "/v1/jobs", submit_job, "Submit a job", _TAGS, Role.user, body=JobCreate,
             reply=Job, status_code=201, headers=(
                 HeaderDoc("Idempotency-Key", "The same key from the same owner: the same job.",
                           255),
                 HeaderDoc("Prefer", "`wait=N`: answer once the job ends, within N seconds.",
                           200),
             )),
    Endpoint("GET", "/v1/jobs", list_jobs, "List your jobs", _TAGS, Role.user, query=JobListQuery,
             reply=JobList),
    Endpoint("GET", "/v1/jobs/{job_id}", get_job, "Read a job (optionally wait for its end)",
             _TAGS, Role.user, query=JobWaitQuery, reply=Job),
    Endpoint("POST", "/v1/jobs/{job_id}/cancel", cancel_job, "Cancel a job", _TAGS, Role.user,
             reply=Job),
    Endpoint("GET", "/v1/jobs/{job_id}/events", job_events, "Stream a job's events (SSE)",
             _TAGS, Role.user, query=JobEventsQuery, media_type="text/event-stream",
             headers=(HeaderDoc("Last-Event-ID", "Resume after this event id.", 64),)),
]  # fmt: skip
