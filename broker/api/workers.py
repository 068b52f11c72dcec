"""The worker side: the long-poll that hands out leases, lease reports, and the fleet view.

A report answers `cancelled: true` once the job was cancelled or ended (the worker stops),
409 when the lease token is no longer the job's lease, and 404 when there is no such job.
"""

from __future__ import annotations

from starlette.responses import Response

from garage.contract import (
    CompleteReport,
    FailReport,
    LeaseReport,
    PollReply,
    PollRequest,
    QueueInfo,
    QueueList,
    ReportReply,
    Role,
    WorkerList,
    WorkerState,
)

from ..clock import from_ms
from ..errors import LeaseLost, NotFound
from ..jobs.leasing import ReportOutcome
from ..routing import Call, Endpoint, json_response

__all__ = ["endpoints"]

_CARRY_ON = ReportReply(cancelled=False).model_dump_json().encode()
_STOP = ReportReply(cancelled=True, accepted=False).model_dump_json().encode()


async def poll(call: Call[PollRequest, None]) -> Response:
    """Long-poll for work: returns as soon as jobs are leased, or empty after `wait_s`."""
    leases = await call.broker.leases.poll(call.caller, call.body, call.disconnected)
    return json_response(PollReply(leases=leases))


def _reply(outcome: ReportOutcome, job_id: str) -> Response:
    if outcome is ReportOutcome.stale:
        raise LeaseLost(f"the lease on job {job_id} is no longer yours")
    if outcome is ReportOutcome.gone:
        raise NotFound(f"no job {job_id!r}", param="job_id")
    body = _STOP if outcome is ReportOutcome.ended else _CARRY_ON
    return Response(body, media_type="application/json")


async def report(call: Call[LeaseReport, None]) -> Response:
    """Streamed text and/or a heartbeat; renews the lease."""
    job_id = call.path["job_id"]
    return _reply(await call.broker.leases.report(call.caller, job_id, call.body), job_id)


async def complete(call: Call[CompleteReport, None]) -> Response:
    """The result, under the job's lease; exactly one result is accepted."""
    job_id = call.path["job_id"]
    return _reply(await call.broker.leases.complete(call.caller, job_id, call.body), job_id)


async def fail(call: Call[FailReport, None]) -> Response:
    """A failure under the job's lease: retried while attempts are left and it may be."""
    job_id = call.path["job_id"]
    return _reply(await call.broker.leases.fail(call.caller, job_id, call.body), job_id)


async def heartbeat(call: Call[WorkerState, None]) -> Response:
    """Updates the worker's fleet entry without asking for work: its health changed while
    its poll was parked."""
    await call.broker.leases.heartbeat(call.caller, call.body)
    return Response(status_code=204)


async def list_workers(call: Call[None, None]) -> Response:
    """Live workers with their models, free slots and GPU health."""
    return json_response(WorkerList(data=await call.broker.store.fleet.live()))


async def list_queues(call: Call[None, None]) -> Response:
    """Every queue that holds jobs, with its depth and the age of its oldest job."""
    now_ms = call.broker.clock()
    queues = [
        QueueInfo(
            model=q.model,
            lane=q.lane,
            depth=q.depth,
            oldest_at=from_ms(q.oldest_ms),
            oldest_age_s=max(now_ms - q.oldest_ms, 0) / 1000,
        )
        for q in await call.broker.store.jobs.queues()
    ]
    return json_response(QueueList(data=queues))


_TAGS = ("workers",)
endpoints = [
    Endpoint("POST", "/v1/worker/poll", poll, "Long-poll for work", _TAGS, Role.worker,
             body=PollRequest, reply=PollReply),
    Endpoint("POST", "/v1/worker/jobs/{job_id}/report", report,
             "Report streamed text or a heartbeat", _TAGS, Role.worker, body=LeaseReport,
             reply=ReportReply),
    Endpoint("POST", "/v1/worker/jobs/{job_id}/complete", complete, "Complete a job", _TAGS,
             Role.worker, body=CompleteReport, reply=ReportReply),
    Endpoint("POST", "/v1/worker/jobs/{job_id}/fail", fail, "Fail a job", _TAGS, Role.worker,
             body=FailReport, reply=ReportReply),
    Endpoint("POST", "/v1/worker/heartbeat", heartbeat,
             "Report health and GPUs without asking for work", _TAGS, Role.worker,
             body=WorkerState, status_code=204),
    Endpoint("GET", "/v1/queues", list_queues, "Queued work per model and lane", _TAGS,
             Role.user, reply=QueueList),
    Endpoint("GET", "/v1/workers", list_workers, "The live fleet with its GPU health", _TAGS,
             Role.user, reply=WorkerList),
]  # fmt: skip
