"""The worker side: the long-poll that hands out leases, lease reports, and the fleet view.

The poll and the reports are plain routes (`plain_routes.py`): every job crosses them.

A poll first records the worker in the fleet view, then tries to claim; with nothing to
claim it parks (see `longpoll.py`) until a wake for one of its models, the client going
away, or its wait running out. A report answers `cancelled: true` once the job was
cancelled or ended, and 409 when the lease token is no longer the job's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from garage.contract import (
    CompleteReport,
    FailReport,
    HealthState,
    JobError,
    Lease,
    LeaseReport,
    PollReply,
    PollRequest,
    ReportReply,
    Role,
    WorkerInfo,
    WorkerList,
)

from ..auth import Principal
from ..deps import Broker, BrokerDep, Caller
from ..errors import BadRequest, LeaseLost, NotFound
from ..longpoll import ParkedPoll
from ..plain_routes import PlainCall, PlainRoute
from ..responses import model_response
from ..store.leases import ReportOutcome

__all__ = ["plain_routes", "router"]

router = APIRouter(tags=["workers"])

_FALLBACK_RECHECK_S = 1.0  # fallback polls take no wakes; they look again this often


async def poll(call: PlainCall[PollRequest]) -> Response:
    """Long-poll for work: returns as soon as jobs are leased, or empty after `wait_s`."""
    broker, body = call.broker, call.body
    await broker.store.fleet.record_poll(_worker_info(body, call.caller))
    wait_s = min(body.wait_s, broker.settings.poll_wait_max_s)
    if body.slots_free == 0 or body.health.state is HealthState.critical or not body.models:
        with contextlib.suppress(TimeoutError):
            # A full or unhealthy worker still long-polls, to keep its fleet entry fresh.
            await asyncio.wait_for(call.disconnected(), wait_s)
        return model_response(PollReply(leases=[]))
    leases = await _claim_or_park(call, wait_s)
    for lease in leases:
        broker.metrics.leased.labels(lease.model).inc()
    return model_response(PollReply(leases=leases))


async def _claim_or_park(call: PlainCall[PollRequest], wait_s: float) -> list[Lease]:
    broker, caller, body = call.broker, call.caller, call.body
    deadline = time.monotonic() + wait_s
    min_wait_ms = round((body.fallback_after_s or 0) * 1000)
    fallback = min_wait_ms > 0
    disconnected = asyncio.ensure_future(call.disconnected())
    polls = broker.notifier.polls
    try:
        while True:
            parked = polls.park(
                [] if fallback else body.models,
                worker_id=body.worker_id,
                lease_owner=caller.id,
            )
            used_wake = False
            try:
                leases = await _claim(call, min_wait_ms)
                remaining = deadline - time.monotonic()
                if leases and disconnected.done():
                    # Nobody will read these: give them straight back rather than let
                    # them sit until their leases run out.
                    await _hand_back(broker, caller, leases)
                    return []
                if leases or remaining <= 0 or disconnected.done():
                    return leases
                wait_for = min(remaining, _FALLBACK_RECHECK_S) if fallback else remaining
                parked.waiting = True
                await _sleep_until_woken(parked, disconnected, wait_for)
                if parked.handed:  # a submit in this process leased it a job directly
                    return parked.handed
                if disconnected.done():
                    return []
                used_wake = parked.woken_for is not None
            finally:
                polls.leave(parked, used_wake=used_wake)
    finally:
        disconnected.cancel()


async def _sleep_until_woken(
    parked: ParkedPoll, disconnected: asyncio.Future[None], timeout_s: float
) -> None:
    """Until the poll is woken or handed a job, its client goes away, or `timeout_s`.

    The request's own task waits on the poll's event, so a hand-off resumes it on the
    loop's next turn, ahead of the submit that handed it (see `enqueue`)."""

    def stop(_: asyncio.Future[None]) -> None:
        parked.event.set()

    disconnected.add_done_callback(stop)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await parked.event.wait()
    finally:
        disconnected.remove_done_callback(stop)


async def _claim(call: PlainCall[PollRequest], min_wait_ms: int) -> list[Lease]:
    """Claims, unless this process knows the poll's models have nothing to claim (a
    fallback poll, which takes only jobs that waited, always claims)."""
    body, hints = call.body, call.broker.notifier.hints
    if not min_wait_ms and hints.known_empty(body.models):
        return []
    snapshot = hints.snapshot(body.models)
    leases = await call.broker.store.leases.claim(
        worker_id=body.worker_id,
        lease_owner=call.caller.id,
        models=body.models,
        slots=body.slots_free,
        min_wait_ms=min_wait_ms,
    )
    if not min_wait_ms and len(leases) < body.slots_free:
        hints.found_empty(snapshot)  # it took everything there was
    return leases


async def _hand_back(broker: Broker, caller: Principal, leases: list[Lease]) -> None:
    gone = JobError(message="the polling worker went away", type="handback")
    for lease in leases:
        await broker.store.leases.fail(
            lease.job_id,
            token=lease.lease_token,
            lease_owner=caller.id,
            error=gone,
            handback=True,
        )


def _worker_info(body: PollRequest, caller: Principal) -> WorkerInfo:
    return WorkerInfo(
        worker_id=body.worker_id,
        name=body.name or body.worker_id,
        owner=caller.id,
        models=body.models,
        slots_free=body.slots_free,
        slots_total=body.slots_total,
        backend=body.backend,
        version=body.version,
        health=body.health,
        gpus=body.gpus,
        fallback_after_s=body.fallback_after_s,
        last_seen_at=datetime.now(UTC),
        running=max(body.slots_total - body.slots_free, 0),
    )


_CARRY_ON = model_response(ReportReply(cancelled=False)).body
_STOP = model_response(ReportReply(cancelled=True, accepted=False)).body
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _job_id(call: PlainCall[Any]) -> str:
    job_id = call.path_params["job_id"]
    if not _JOB_ID.match(job_id):
        raise BadRequest(f"not a job id: {job_id[:80]!r}", param="job_id")
    return job_id


def _reply(outcome: ReportOutcome, job_id: str, broker: Broker) -> Response:
    if outcome in (ReportOutcome.requeued, ReportOutcome.failed):
        broker.metrics.finished.labels(outcome.value).inc()
    if outcome is ReportOutcome.stale:
        broker.metrics.stale.inc()
        raise LeaseLost(f"the lease on job {job_id} is no longer yours")
    if outcome is ReportOutcome.gone:
        raise NotFound(f"no job {job_id!r}", param="job_id")
    body = _STOP if outcome is ReportOutcome.ended else _CARRY_ON
    return Response(body, media_type="application/json")


async def report(call: PlainCall[LeaseReport]) -> Response:
    """Streamed text and/or a heartbeat; renews the lease."""
    job_id, body = _job_id(call), call.body
    await call.broker.notifier.polls.written(job_id)
    outcome = await call.broker.store.leases.report(
        job_id, token=body.lease_token, lease_owner=call.caller.id, text=body.text
    )
    return _reply(outcome, job_id, call.broker)


async def complete(call: PlainCall[CompleteReport]) -> Response:
    """The result, under the job's lease; exactly one result is accepted."""
    job_id, body, broker = _job_id(call), call.body, call.broker
    # A request in this process waiting for the end gets the finished job from the same
    # script, instead of reading it back.
    await broker.notifier.polls.written(job_id)
    waited_for = broker.notifier.awaits_end(job_id)
    outcome, job = await broker.store.leases.complete_reading_job(
        job_id,
        token=body.lease_token,
        lease_owner=call.caller.id,
        result=body.result,
        usage=body.usage,
        timings=body.timings,
        text=body.text,
        read_job=waited_for,
        ended_by=broker.notifier.process_id,
    )
    if outcome is ReportOutcome.ok:
        broker.notifier.job_ended(job_id, job)
        broker.metrics.finished.labels("succeeded").inc()
        if waited_for:
            # One turn of the loop, so the waiting requests answer before this one: the
            # result reaches its caller first, the worker's acknowledgement after.
            await asyncio.sleep(0)
    return _reply(outcome, job_id, broker)


async def fail(call: PlainCall[FailReport]) -> Response:
    """A failure under the job's lease: retried while attempts are left and it may be."""
    job_id, body, broker = _job_id(call), call.body, call.broker
    await broker.notifier.polls.written(job_id)
    outcome = await broker.store.leases.fail(
        job_id,
        token=body.lease_token,
        lease_owner=call.caller.id,
        error=body.error,
        retryable=body.retryable,
        handback=body.handback,
        ended_by=broker.notifier.process_id,
    )
    if outcome is ReportOutcome.failed:
        broker.notifier.job_ended(job_id)
    return _reply(outcome, job_id, broker)


_TAGS = ("workers",)
plain_routes = [
    PlainRoute("POST", "/v1/worker/poll", poll, PollRequest, PollReply, Role.worker,
               "Long-poll for work", tags=_TAGS),
    PlainRoute("POST", "/v1/worker/jobs/{job_id}/report", report, LeaseReport, ReportReply,
               Role.worker, "Report streamed text or a heartbeat", tags=_TAGS),
    PlainRoute("POST", "/v1/worker/jobs/{job_id}/complete", complete, CompleteReport,
               ReportReply, Role.worker, "Complete a job", tags=_TAGS),
    PlainRoute("POST", "/v1/worker/jobs/{job_id}/fail", fail, FailReport, ReportReply,
               Role.worker, "Fail a job", tags=_TAGS),
]  # fmt: skip


@router.get("/v1/workers", response_model=WorkerList)
async def list_workers(broker: BrokerDep, caller: Caller) -> Response:
    """Live workers with their models, free slots and GPU health."""
    caller.require(Role.user)
    return model_response(WorkerList(data=await broker.store.fleet.live()))
