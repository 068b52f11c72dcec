"""A job's path through this broker on the worker's side: the long-poll that leases jobs,
the lease reports (streamed text, heartbeats) and the final reports (complete, fail).

A poll first records the worker in the fleet view, then claims; with nothing to claim it
parks (`polls.py`) until a wake for one of its models, a submit that hands it a job, its
client going away, or its wait running out. A poll the fleet view deferred (it changed
only free slots) is written there if it is still waiting when that falls due, so an idle
worker does not show the load of its last busy poll. Reports are fenced by the lease token
in the scripts; an outcome tells the route what to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from garage.contract import (
    CompleteReport,
    FailReport,
    HealthState,
    JobError,
    JobErrorType,
    Lease,
    LeaseReport,
    PollRequest,
    WorkerInfo,
    WorkerState,
)

from ..auth import Principal
from ..errors import Conflict, RateLimited
from ..settings import BrokerSettings
from ..store import Store
from ..store.fleet import DeferredPoll, FleetRefused
from ..store.leases import ReportOutcome
from .notify import Notifier
from .polls import ParkedPoll

__all__ = ["LeaseService", "ReportOutcome"]

StateT = TypeVar("StateT", bound=WorkerState)

_FALLBACK_RECHECK_S = 1.0  # fallback polls take no wakes; they look again this often


class LeaseService:
    _stopping = False

    def __init__(self, settings: BrokerSettings, store: Store, notifier: Notifier) -> None:
        self._settings = settings
        self._store = store
        self._notifier = notifier
        self._waiting: set[asyncio.Future[None]] = set()  # each waiting poll's client-gone

    def stop(self) -> None:
        """This process is stopping: every waiting poll ends now, as if its worker had
        left (a job handed to it meanwhile goes back to the queue), and new ones get
        nothing, so workers poll another broker or this one once it is back."""
        self._stopping = True
        for gone in self._waiting:
            gone.cancel()

    def _client_gone(self, disconnected: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        gone = asyncio.ensure_future(disconnected())
        if self._stopping:
            gone.cancel()
        self._waiting.add(gone)
        gone.add_done_callback(self._waiting.discard)
        return gone

    async def poll(
        self,
        caller: Principal,
        body: PollRequest,
        disconnected: Callable[[], Awaitable[None]],
    ) -> list[Lease]:
        """Leases jobs as soon as there are any, or none after the poll's wait."""
        body = _allowed(body, caller)
        deferred = await self._record(_worker_info(body, caller))
        wait_s = min(body.wait_s, self._settings.poll_wait_max_s)
        if body.slots_free == 0 or body.health.state is HealthState.critical or not body.models:
            # A full or unhealthy worker still long-polls, to keep its fleet entry fresh.
            gone = self._client_gone(disconnected)
            try:
                await self._wait_writing(deferred, wait_s, functools.partial(_wait_gone, gone))
            finally:
                gone.cancel()
            return []
        return await self._claim_or_park(caller, body, wait_s, disconnected, deferred)

    async def heartbeat(self, caller: Principal, body: WorkerState) -> None:
        """Writes the worker's fleet entry now: its health changed while a poll parked."""
        await self._record(_worker_info(_allowed(body, caller), caller), defer=False)

    async def _record(self, info: WorkerInfo, *, defer: bool = True) -> DeferredPoll | None:
        """The poll's fleet entry, written (or deferred); refused when it is another worker
        key's (409) or the key has its most live workers (429)."""
        try:
            return await self._store.fleet.record_poll(info, defer=defer)
        except FleetRefused as refused:
            if refused.reason == "taken":
                raise Conflict(
                    f"worker id {refused.worker_id!r} belongs to a live worker of another "
                    "worker key; give this worker another name",
                    param="worker_id",
                ) from None
            raise RateLimited(
                f"this worker key has {refused.most} live workers, its most; use another "
                "key for more workers",
                headers={"Retry-After": "60"},
            ) from None

    async def _claim_or_park(
        self,
        caller: Principal,
        body: PollRequest,
        wait_s: float,
        disconnected: Callable[[], Awaitable[None]],
        deferred: DeferredPoll | None,
    ) -> list[Lease]:
        deadline = time.monotonic() + wait_s
        min_wait_ms = round((body.fallback_after_s or 0) * 1000)
        fallback = min_wait_ms > 0
        gone = self._client_gone(disconnected)
        polls = self._notifier.polls
        try:
            while True:
                parked = polls.park(
                    [] if fallback else body.models,
                    worker_id=body.worker_id,
                    lease_owner=caller.id,
                )
                used_wake = False
                try:
                    leases = await self._claim(caller, body, min_wait_ms)
                    remaining = deadline - time.monotonic()
                    if not (leases or remaining <= 0 or gone.done()):
                        wait_for = min(remaining, _FALLBACK_RECHECK_S) if fallback else remaining
                        parked.waiting = True
                        sleep = functools.partial(_sleep_until_woken, parked, gone)
                        deferred = await self._wait_writing(deferred, wait_for, sleep)
                        leases = parked.handed  # a submit leased it a job directly
                        used_wake = parked.woken_for is not None
                        if not leases and not gone.done():
                            continue
                    if leases and gone.done():
                        # Nobody will read these: give them straight back rather than let
                        # them sit until their leases run out.
                        await self._hand_back(caller, leases)
                        return []
                    return leases
                finally:
                    polls.leave(parked, used_wake=used_wake)
        finally:
            gone.cancel()

    async def _wait_writing(
        self,
        deferred: DeferredPoll | None,
        timeout_s: float,
        wait: Callable[[float], Awaitable[bool]],
    ) -> DeferredPoll | None:
        """`wait`s up to `timeout_s` (it says whether it was cut short), writing the poll's
        deferred fleet entry if the wait reaches the time it is due; what is left to write.

        Only a poll that waits that long writes: a busy worker's re-poll that is handed a job
        within the interval adds no Redis round trip, and one whose client went away writes
        nothing."""
        end = time.monotonic() + timeout_s
        if deferred is not None and deferred.due < end:
            if await wait(max(deferred.due - time.monotonic(), 0)):
                return deferred
            await self._store.fleet.write_deferred(deferred)
            deferred = None
        await wait(max(end - time.monotonic(), 0))
        return deferred

    async def _claim(self, caller: Principal, body: PollRequest, min_wait_ms: int) -> list[Lease]:
        """Claims, unless this process knows the poll's models have nothing to claim (a
        fallback poll, which takes only jobs that waited, always claims)."""
        hints = self._notifier.hints
        if not min_wait_ms and hints.known_empty(body.models):
            return []
        snapshot = hints.snapshot(body.models)
        leases = await self._store.leases.claim(
            worker_id=body.worker_id,
            lease_owner=caller.id,
            models=body.models,
            slots=body.slots_free,
            min_wait_ms=min_wait_ms,
        )
        if not min_wait_ms and len(leases) < body.slots_free:
            hints.found_empty(snapshot)  # it took everything there was
        return leases

    async def _hand_back(self, caller: Principal, leases: list[Lease]) -> None:
        gone = JobError(message="the polling worker went away", type=JobErrorType.handback)
        for lease in leases:
            await self._store.leases.fail(
                lease.job_id,
                token=lease.lease_token,
                lease_owner=caller.id,
                error=gone,
                handback=True,
            )

    async def report(self, caller: Principal, job_id: str, body: LeaseReport) -> ReportOutcome:
        """Streamed text and/or a heartbeat; renews the lease."""
        return await self._store.leases.report(
            job_id, token=body.lease_token, lease_owner=caller.id, text=body.text, seq=body.seq
        )

    async def complete(self, caller: Principal, job_id: str, body: CompleteReport) -> ReportOutcome:
        """The result, under the job's lease; exactly one result is accepted."""
        notifier = self._notifier
        # A request in this process waiting for the end gets the finished job from the
        # same script, instead of reading it back.
        waited_for = notifier.awaits_end(job_id)
        outcome, job = await self._store.leases.complete_reading_job(
            job_id,
            token=body.lease_token,
            lease_owner=caller.id,
            result=body.result,
            usage=body.usage,
            timings=body.timings,
            text=body.text,
            read_job=waited_for,
            ended_by=notifier.process_id,
        )
        if outcome is ReportOutcome.ok:
            notifier.job_ended(job_id, job)
            if waited_for:
                # One turn of the loop, so the waiting requests answer before this one: the
                # result reaches its caller first, the worker's acknowledgement after.
                await asyncio.sleep(0)
        return outcome

    async def fail(self, caller: Principal, job_id: str, body: FailReport) -> ReportOutcome:
        """A failure under the job's lease: retried while attempts are left and it may be."""
        outcome = await self._store.leases.fail(
            job_id,
            token=body.lease_token,
            lease_owner=caller.id,
            error=body.error,
            retryable=body.retryable,
            handback=body.handback,
            usage=body.usage,
            ended_by=self._notifier.process_id,
        )
        if outcome is ReportOutcome.failed:
            self._notifier.job_ended(job_id)
        return outcome


async def _sleep_until_woken(
    parked: ParkedPoll, gone: asyncio.Future[None], timeout_s: float
) -> bool:
    """Until the poll is woken or handed a job, its client goes away, or `timeout_s`; and
    while a submit holds it reserved, until that submit hands it the job or lets it go.
    Whether it was cut short of `timeout_s`.

    The request's own task waits on the poll's event, so a hand-off resumes it on the
    loop's next turn."""

    def stop(_: asyncio.Future[None]) -> None:
        parked.event.set()

    gone.add_done_callback(stop)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await parked.event.wait()
        await parked.settled.wait()
    finally:
        gone.remove_done_callback(stop)
    return parked.event.is_set() or gone.done()


async def _wait_gone(gone: asyncio.Future[None], timeout_s: float) -> bool:
    """Until the client goes away or `timeout_s`; whether it went."""
    await asyncio.wait([gone], timeout=timeout_s)
    return gone.done()


def _allowed(body: StateT, caller: Principal) -> StateT:
    """The poll as its worker key may make it: a key limited to some models serves
    those alone, whatever else its workers' backends list."""
    allowed = caller.limits.models
    if allowed is None or set(body.models) <= set(allowed):
        return body
    return body.model_copy(update={"models": [m for m in body.models if m in allowed]})


def _worker_info(body: WorkerState, caller: Principal) -> WorkerInfo:
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
        gpu_limits=body.gpu_limits,
        fallback_after_s=body.fallback_after_s,
        last_seen_at=datetime.now(UTC),
        running=max(body.slots_total - body.slots_free, 0),
    )
