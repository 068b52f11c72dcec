"""Native jobs: submit, read (optionally waiting for the end), list, cancel, stream events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from garage.client.schemas import TERMINAL_STATUSES, Job, JobCreate, JobList, JobStatus, Role

from ..auth import Principal
from ..deps import Broker, BrokerDep, Caller
from ..errors import BadRequest, Conflict, NotFound
from ..store.events import is_event_id

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

_RECHECK_S = 5.0  # a reader re-reads this often even if a pub/sub message went missing
_TERMINAL_EVENTS = ("done", "error")


async def _visible_job(broker: Broker, caller: Principal, job_id: str) -> Job:
    caller.require(Role.user)
    job = await broker.store.jobs.get(job_id)
    if job is None or not caller.can_see(job.owner):
        raise NotFound(f"no job {job_id!r}", param="job_id")
    return job


@router.post("", status_code=201, response_model=Job)
async def submit_job(
    spec: JobCreate,
    broker: BrokerDep,
    caller: Caller,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Job:
    """Queues a job. The same `Idempotency-Key` from the same owner returns the same job."""
    caller.require(Role.user)
    submitted = await broker.store.jobs.submit(caller.id, spec, idempotency_key=idempotency_key)
    if not submitted.created:
        response.status_code = 200
    job = await broker.store.jobs.get(submitted.job_id)
    assert job is not None
    return job


@router.get("/{job_id}", response_model=Job)
async def get_job(
    job_id: JobId,
    broker: BrokerDep,
    caller: Caller,
    wait_s: Annotated[
        float, Query(ge=0, le=60, description="Wait up to this long for the job to end.")
    ] = 0,
) -> Job:
    job = await _visible_job(broker, caller, job_id)
    if wait_s <= 0 or job.status in TERMINAL_STATUSES:
        return job
    deadline = time.monotonic() + wait_s
    async with broker.notifier.watch(job_id) as changed:
        while True:
            changed.clear()
            status = await broker.store.jobs.status(job_id)
            remaining = deadline - time.monotonic()
            if status is None or status in TERMINAL_STATUSES or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, _RECHECK_S))
    return await _visible_job(broker, caller, job_id)


@router.get("", response_model=JobList)
async def list_jobs(
    broker: BrokerDep,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        str | None, Query(max_length=64, description="Last id of the previous page.")
    ] = None,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(max_length=256)] = None,
) -> JobList:
    """Your jobs, newest first (an admin sees everyone's)."""
    caller.require(Role.user)
    owner = None if caller.role is Role.admin else caller.id
    jobs, more = await broker.store.jobs.list(
        owner, limit=limit, before=after, status=status, model=model
    )
    return JobList(data=jobs, has_more=more, last_id=jobs[-1].id if jobs else None)


@router.post("/{job_id}/cancel", response_model=Job)
async def cancel_job(job_id: JobId, broker: BrokerDep, caller: Caller) -> Job:
    """Cancels a queued or running job; a running job's worker learns on its next report."""
    await _visible_job(broker, caller, job_id)
    outcome = await broker.store.jobs.cancel(job_id)
    if not outcome.found:
        raise NotFound(f"no job {job_id!r}", param="job_id")
    if outcome.status is not JobStatus.cancelled:
        raise Conflict(f"job {job_id} already ended as {outcome.status.value}", code="job_ended")
    return await _visible_job(broker, caller, job_id)


async def _readable_stream(
    job_id: JobId,
    broker: BrokerDep,
    caller: Caller,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    after: Annotated[
        str | None, Query(max_length=64, description="Resume after this event id.")
    ] = None,
) -> str | None:
    """Checks access and the resume position before the stream's response starts."""
    await _visible_job(broker, caller, job_id)
    position = last_event_id or after
    if position is not None and not is_event_id(position):
        raise BadRequest(f"not an event id: {position!r}", param="Last-Event-ID")
    return position


@router.get("/{job_id}/events", response_class=EventSourceResponse)
async def job_events(
    job_id: JobId,
    broker: BrokerDep,
    position: Annotated[str | None, Depends(_readable_stream)],
) -> AsyncIterator[ServerSentEvent]:
    """The job's events as SSE: status, delta, restart, done, error. Resumable with
    `Last-Event-ID` (or `?after=`); ends after `done` or `error`."""
    async with broker.notifier.watch(job_id) as changed:
        while True:
            changed.clear()
            events = await broker.store.events.read(job_id, after=position)
            for event in events:
                kind = json.loads(event.data)["type"]
                yield ServerSentEvent(raw_data=event.data, event=kind, id=event.id)
                position = event.id
                if kind in _TERMINAL_EVENTS:
                    return
            if not events:
                if await broker.store.jobs.status(job_id) is None:
                    return  # expired after its retention time
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), _RECHECK_S)
