"""Native jobs: submit, read (optionally waiting for the end), list, cancel, stream events.

The submit is a plain route (`plain_routes.py`), as every job starts there."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from garage.contract import (
    TERMINAL_STATUSES,
    Job,
    JobCreate,
    JobList,
    JobStatus,
    Lane,
    Role,
)

from ..auth import Principal
from ..deps import Broker, BrokerDep, Caller
from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..notify import JobEnd
from ..plain_routes import HeaderDoc, PlainCall, PlainRoute
from ..responses import model_response
from ..store.events import is_event_id
from ..store.jobs import LeaseTarget, Submitted, new_job_id

__all__ = ["enqueue", "plain_routes", "require_served", "router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

_RECHECK_S = 5.0  # a reader re-reads this often even if a pub/sub message went missing
_MAX_WAIT_S = 60.0
_TERMINAL_EVENTS = ("done", "error")


async def _visible_job(broker: Broker, caller: Principal, job_id: str) -> Job:
    caller.require(Role.user)
    job = await broker.store.jobs.get(job_id)
    if job is None or not caller.can_see(job.owner):
        raise NotFound(f"no job {job_id!r}", param="job_id")
    return job


_SERVED_MAX_AGE_S = 1.0  # how stale the list of served models may be when a submit asks


async def enqueue(
    broker: Broker,
    owner: str,
    spec: JobCreate,
    *,
    job_id: str,
    idempotency_key: str | None = None,
    watcher: str = "",
) -> Submitted:
    """Queues a job, or hands an interactive one straight to a poll parked in this process,
    created already leased to it. Batch jobs always queue, so interactive work waiting
    elsewhere keeps its precedence over them. `watcher`: this process's id when a request
    here will wait for the job's end.

    The hand-off does not wait for `submit.lua`: the poll's answer goes out first and the
    script right after it, which takes a Redis round trip off every interactive job's
    path. The worker's report on the job may then reach this process before the script
    has run. Over the command channel (`store/command_channel.py`) that is safe as soon as
    the script is sent, since Redis runs this process's scripts in the order they were
    sent; a report that arrives before the send waits for it (`PollWaiters.written`), and
    without the channel (fakeredis) it waits until the script has run. A report sent to
    another broker replica cannot wait; the script is sent before this process runs any
    other request's handler, so the report would have to overtake a single round trip.
    If it did, it would find no job (404, so the worker drops the lease), and the lease,
    once written, would run out and requeue the job. Should the script fail, the
    submitter gets the error and the worker's first report finds no job.
    A submit with an idempotency key may return an earlier job instead, so it is never
    handed off early.
    """
    polls = broker.notifier.polls
    handoff = spec.lane is Lane.interactive and idempotency_key is None
    poll = polls.waiting_for(spec.model) if handoff else None
    if poll is None:
        with broker.notifier.queueing(job_id):
            submitted = await broker.store.jobs.submit(
                owner, spec, idempotency_key=idempotency_key, job_id=job_id, watcher=watcher
            )
            if submitted.created:
                broker.metrics.submitted.labels(spec.model, spec.lane.value).inc()
                broker.notifier.job_queued(spec.model, job_id)
        return submitted
    target = LeaseTarget(poll.worker_id, poll.lease_owner, broker.store.leases.lease_ms)
    submission = broker.store.jobs.prepare(
        owner, spec, job_id=job_id, lease_to=target, watcher=watcher
    )
    assert submission.lease is not None
    with polls.writing(job_id):  # a report from the worker on this job waits for the send
        polls.hand(poll, submission.lease)
        await asyncio.sleep(0)  # the poll's answer goes out first; the script right after it
        outcome = await broker.store.jobs.send(submission)
    submitted = await outcome
    broker.metrics.submitted.labels(spec.model, spec.lane.value).inc()
    return submitted


async def require_served(broker: Broker, spec: JobCreate) -> None:
    """Fails fast (503) when no live worker serves an interactive job's model."""
    if spec.lane is not Lane.interactive or spec.wait_for_worker:
        return
    if spec.model not in await broker.store.fleet.models(max_age_s=_SERVED_MAX_AGE_S):
        raise Unavailable(
            f"no live worker serves model {spec.model!r}; submit to the batch lane or set "
            "wait_for_worker to queue it anyway",
            code="model_not_served",
            param="model",
        )


_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)")


def _preferred_wait_s(prefer: str | None) -> float:
    """`Prefer: wait=N` (RFC 7240): hold the submit up to N seconds for the result."""
    found = _PREFER_WAIT.search(prefer or "")
    return min(float(found.group(1)), _MAX_WAIT_S) if found else 0.0


async def _wait_for_end(
    broker: Broker, job: Job, wait_s: float, ended: JobEnd, *, fresh: bool = False
) -> Job:
    """The job once it ended, or as it is after `wait_s`. `ended` must have been registered
    (`Notifier.until_ended`) before `job` was read. Unless `fresh` (the job was just
    created with this process as its watcher), the job is first marked as watched by this
    process, so another that ends it publishes the end."""
    if wait_s <= 0 or job.status in TERMINAL_STATUSES:
        return job
    deadline = time.monotonic() + wait_s
    jobs = broker.store.jobs
    if not fresh:
        status = await jobs.watch(job.id, broker.notifier.process_id)
        if status is None or status in TERMINAL_STATUSES:
            return await jobs.get(job.id) or job
    while not ended.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # asyncio.timeout, not wait_for: this task itself waits on the event, so it runs
        # on the loop's next turn after the end is signalled (see workers.complete).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(remaining, _RECHECK_S)):
                await ended.wait()
        if not ended.is_set() and time.monotonic() < deadline:  # a message may be lost
            status = await jobs.status(job.id)
            if status is None or status in TERMINAL_STATUSES:
                break
    return ended.job or await jobs.get(job.id) or job


async def submit_job(call: PlainCall[JobCreate]) -> Response:
    """Queues a job. The same `Idempotency-Key` from the same owner returns the same job
    (200 instead of 201). With `Prefer: wait=N` the answer waits up to N seconds for the end."""
    broker, spec = call.broker, call.body
    idempotency_key = call.header("Idempotency-Key", max_length=255)
    wait_s = _preferred_wait_s(call.header("Prefer", max_length=200))
    await require_served(broker, spec)
    job_id = new_job_id(broker.clock())
    # Listen for the end before the job exists, so no end can slip past unseen.
    with broker.notifier.until_ended(job_id) as ended:
        submitted = await enqueue(
            broker,
            call.caller.id,
            spec,
            job_id=job_id,
            idempotency_key=idempotency_key,
            watcher=broker.notifier.process_id if wait_s > 0 else "",
        )
        if submitted.created:
            job = await _wait_for_end(broker, submitted.job, wait_s, ended, fresh=True)
        else:
            with broker.notifier.until_ended(submitted.job_id) as earlier_ended:
                job = await _wait_for_end(broker, submitted.job, wait_s, earlier_ended)
    return model_response(
        job,
        status_code=201 if submitted.created else 200,
        headers={"Preference-Applied": f"wait={wait_s:g}"} if wait_s else None,
    )


plain_routes = [
    PlainRoute(
        "POST",
        "/v1/jobs",
        submit_job,
        JobCreate,
        Job,
        Role.user,
        "Submit a job",
        status_code=201,
        tags=("jobs",),
        headers=(
            HeaderDoc("Idempotency-Key", "The same key from the same owner: the same job.", 255),
            HeaderDoc("Prefer", "`wait=N`: answer once the job ends, within N seconds.", 200),
        ),
    )
]


@router.get("/{job_id}", response_model=Job)
async def get_job(
    job_id: JobId,
    broker: BrokerDep,
    caller: Caller,
    wait_s: Annotated[
        float, Query(ge=0, le=_MAX_WAIT_S, description="Wait up to this long for the end.")
    ] = 0,
) -> Response:
    with broker.notifier.until_ended(job_id) as ended:
        job = await _visible_job(broker, caller, job_id)
        return model_response(await _wait_for_end(broker, job, wait_s, ended))


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
) -> Response:
    """Your jobs, newest first (an admin sees everyone's)."""
    caller.require(Role.user)
    owner = None if caller.role is Role.admin else caller.id
    jobs, more = await broker.store.jobs.list(
        owner, limit=limit, before=after, status=status, model=model
    )
    return model_response(JobList(data=jobs, has_more=more, last_id=jobs[-1].id if jobs else None))


@router.post("/{job_id}/cancel", response_model=Job)
async def cancel_job(job_id: JobId, broker: BrokerDep, caller: Caller) -> Response:
    """Cancels a queued or running job; a running job's worker learns on its next report."""
    await _visible_job(broker, caller, job_id)
    outcome = await broker.store.jobs.cancel(job_id, ended_by=broker.notifier.process_id)
    broker.notifier.job_ended(job_id)
    if not outcome.found:
        raise NotFound(f"no job {job_id!r}", param="job_id")
    if outcome.status is not JobStatus.cancelled:
        raise Conflict(f"job {job_id} already ended as {outcome.status.value}", code="job_ended")
    return model_response(await _visible_job(broker, caller, job_id))


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
    async with broker.notifier.stream(job_id) as changed:
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
