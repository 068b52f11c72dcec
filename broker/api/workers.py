"""The worker side: the long-poll that hands out leases, lease reports, and the fleet view.

A poll first records the worker in the fleet view, then tries to claim; with nothing to
claim it parks (see `longpoll.py`) until a wake for one of its models, the client going
away, or its wait running out. A report answers `cancelled: true` once the job was
cancelled or ended, and 409 when the lease token is no longer the job's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.types import Message

from garage.client.schemas import (
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
from ..errors import LeaseLost, NotFound
from ..responses import model_response
from ..store.leases import ReportOutcome

__all__ = ["router"]

router = APIRouter(tags=["workers"])

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

_FALLBACK_RECHECK_S = 1.0  # fallback polls take no wakes; they look again this often


@router.post("/v1/worker/poll", response_model=PollReply)
async def poll(body: PollRequest, request: Request, broker: BrokerDep, caller: Caller) -> Response:
    """Long-poll for work: returns as soon as jobs are leased, or empty after `wait_s`."""
    caller.require(Role.worker)
    await broker.store.fleet.record_poll(_worker_info(body, caller))
    wait_s = min(body.wait_s, broker.settings.poll_wait_max_s)
    if body.slots_free == 0 or body.health.state is HealthState.critical or not body.models:
        await _park_without_work(request, wait_s)
        return model_response(PollReply(leases=[]))
    leases = await _claim_or_park(broker, caller, body, request, wait_s)
    for lease in leases:
        broker.metrics.leased.labels(lease.model).inc()
    return model_response(PollReply(leases=leases))


async def _claim_or_park(
    broker: Broker, caller: Principal, body: PollRequest, request: Request, wait_s: float
) -> list[Lease]:
    deadline = time.monotonic() + wait_s
    min_wait_ms = round((body.fallback_after_s or 0) * 1000)
    fallback = min_wait_ms > 0
    disconnected = asyncio.ensure_future(_disconnect(request))
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
                leases = await broker.store.leases.claim(
                    worker_id=body.worker_id,
                    lease_owner=caller.id,
                    models=body.models,
                    slots=body.slots_free,
                    min_wait_ms=min_wait_ms,
                )
                remaining = deadline - time.monotonic()
                if leases and disconnected.done():
                    # Nobody will read these: give them straight back rather than let
                    # them sit until their leases run out.
                    await _hand_back(broker, caller, leases)
                    return []
                if leases or remaining <= 0 or disconnected.done():
                    return leases
                wait_for = min(remaining, _FALLBACK_RECHECK_S) if fallback else remaining
                woken = asyncio.ensure_future(parked.event.wait())
                done, _ = await asyncio.wait(
                    {woken, disconnected}, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
                if parked.handed:  # a submit in this process leased it a job directly
                    return parked.handed
                if disconnected in done:
                    return []
                used_wake = woken in done
            finally:
                polls.leave(parked, used_wake=used_wake)
    finally:
        disconnected.cancel()


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


async def _disconnect(request: Request) -> None:
    """Returns when the client goes away (the body was read already)."""
    while True:
        message: Message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _park_without_work(request: Request, wait_s: float) -> None:
    """A full or unhealthy worker still long-polls, to keep its fleet entry fresh."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_disconnect(request), wait_s)


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


@router.post("/v1/worker/jobs/{job_id}/report", response_model=ReportReply)
async def report(job_id: JobId, body: LeaseReport, broker: BrokerDep, caller: Caller) -> Response:
    """Streamed text and/or a heartbeat; renews the lease."""
    caller.require(Role.worker)
    outcome = await broker.store.leases.report(
        job_id, token=body.lease_token, lease_owner=caller.id, text=body.text
    )
    return _reply(outcome, job_id, broker)


@router.post("/v1/worker/jobs/{job_id}/complete", response_model=ReportReply)
async def complete(
    job_id: JobId, body: CompleteReport, broker: BrokerDep, caller: Caller
) -> Response:
    caller.require(Role.worker)
    outcome = await broker.store.leases.complete(
        job_id,
        token=body.lease_token,
        lease_owner=caller.id,
        result=body.result,
        usage=body.usage,
        timings=body.timings,
        text=body.text,
    )
    if outcome is ReportOutcome.ok:
        broker.notifier.job_ended(job_id)
        broker.metrics.finished.labels("succeeded").inc()
    return _reply(outcome, job_id, broker)


@router.post("/v1/worker/jobs/{job_id}/fail", response_model=ReportReply)
async def fail(job_id: JobId, body: FailReport, broker: BrokerDep, caller: Caller) -> Response:
    caller.require(Role.worker)
    outcome = await broker.store.leases.fail(
        job_id,
        token=body.lease_token,
        lease_owner=caller.id,
        error=body.error,
        retryable=body.retryable,
        handback=body.handback,
    )
    if outcome is ReportOutcome.failed:
        broker.notifier.job_ended(job_id)
    return _reply(outcome, job_id, broker)


@router.get("/v1/workers", response_model=WorkerList)
async def list_workers(broker: BrokerDep, caller: Caller) -> Response:
    """Live workers with their models, free slots and GPU health."""
    caller.require(Role.user)
    return model_response(WorkerList(data=await broker.store.fleet.live()))
