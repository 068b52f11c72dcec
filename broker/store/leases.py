"""Leases: where a job is handed to a worker, renewed, and ended by the worker's report.

Every call is one Lua script, so a lease changes hands atomically. The lease token fences
reports: a worker whose lease was reaped or moved on gets `stale` and changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from garage.contract import Job, JobError, Lease, Timings, Usage

from ..clock import Clock, from_ms
from ..ids import new_token
from . import keys
from .jobs import job_from_hash
from .scripts import Scripts

__all__ = ["LeaseStore", "ReapCounts", "ReportOutcome"]

logger = logging.getLogger(__name__)

_FIELDS_PER_LEASE = 8


class ReportOutcome(StrEnum):
    ok = "ok"  # accepted; the lease is renewed
    requeued = "requeued"  # a failure that sent the job back to its queue
    failed = "failed"  # a failure that ended the job
    ended = "ended"  # the job was cancelled or has ended: the worker stops
    repeated = "repeated"  # a final report this lease already made, sent again: no change
    stale = "stale"  # the token is not the job's current lease: 409, nothing changed
    gone = "gone"  # no such job (never existed, or expired after retention)


@dataclass(frozen=True)
class ReapCounts:
    requeued: int
    failed: int
    expired: int


class LeaseStore:
    def __init__(
        self,
        redis: Any,
        scripts: Scripts,
        clock: Clock,
        *,
        lease_ms: int,
        retention_ms: int,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._clock = clock
        self.lease_ms = lease_ms
        self._retention_ms = retention_ms

    async def claim(
        self,
        *,
        worker_id: str,
        lease_owner: str,
        models: list[str],
        slots: int,
        min_wait_ms: int = 0,
    ) -> list[Lease]:
        """Leases up to `slots` jobs of `models`, interactive lane first."""
        if slots <= 0 or not models:
            return []
        now_ms = self._clock()
        flat = await self._scripts.claim(
            args=[
                now_ms,
                self.lease_ms,
                worker_id,
                lease_owner,
                min_wait_ms,
                self._retention_ms,
                len(models),
                *models,
                *(new_token() for _ in range(slots)),
            ]
        )
        leases = []
        for i in range(0, len(flat), _FIELDS_PER_LEASE):
            job_id, token, attempt, model, kind, lane, request, deadline = flat[
                i : i + _FIELDS_PER_LEASE
            ]
            leases.append(
                Lease(
                    job_id=job_id,
                    lease_token=token,
                    attempt=int(attempt),
                    model=model,
                    kind=kind,
                    lane=lane,
                    request=json.loads(request),
                    lease_s=self.lease_ms / 1000,
                    deadline_at=from_ms(deadline),
                )
            )
            logger.info(
                "job.leased",
                extra={"job_id": job_id, "attempt": int(attempt), "worker_id": worker_id},
            )
        return leases

    async def report(
        self, job_id: str, *, token: str, lease_owner: str, text: str = "", seq: int | None = None
    ) -> ReportOutcome:
        """Renews the lease and appends streamed text (once per `seq`, when given)."""
        outcome = await self._scripts.report(
            args=[
                job_id,
                token,
                lease_owner,
                self._clock(),
                self.lease_ms,
                text,
                self._retention_ms,
                "" if seq is None else seq,
            ]
        )
        return ReportOutcome(outcome)

    async def complete(
        self,
        job_id: str,
        *,
        token: str,
        lease_owner: str,
        result: dict[str, Any],
        usage: Usage | None = None,
        timings: Timings | None = None,
        text: str = "",
        ended_by: str = "",
    ) -> ReportOutcome:
        outcome, _ = await self.complete_reading_job(
            job_id,
            token=token,
            lease_owner=lease_owner,
            result=result,
            usage=usage,
            timings=timings,
            text=text,
            read_job=False,
            ended_by=ended_by,
        )
        return outcome

    async def complete_reading_job(
        self,
        job_id: str,
        *,
        token: str,
        lease_owner: str,
        result: dict[str, Any],
        usage: Usage | None = None,
        timings: Timings | None = None,
        text: str = "",
        read_job: bool = True,
        ended_by: str = "",
    ) -> tuple[ReportOutcome, Job | None]:
        """`complete`, also returning the finished job (read in the same script) when the
        result was accepted and `read_job` is set. `ended_by` is the calling broker's
        process id: the end is published only if another process waits for it. `usage`
        adds to the job's, charged to its owner as the job ends; a job cancelled under
        this lease answers `ended` and is charged `usage` all the same, once."""
        reply = await self._scripts.complete(
            args=[
                job_id,
                token,
                lease_owner,
                self._clock(),
                json.dumps(result, separators=(",", ":")),
                usage.model_dump_json() if usage else "",
                timings.model_dump_json(exclude_none=True) if timings else "",
                text,
                self._retention_ms,
                "1" if read_job else "",
                ended_by,
            ]
        )
        job = None
        if isinstance(reply, list):
            reply, flat = reply
            job = job_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        outcome = ReportOutcome(reply)
        if outcome is ReportOutcome.ok:
            logger.info("job.succeeded", extra={"job_id": job_id})
        return outcome, job

    async def fail(
        self,
        job_id: str,
        *,
        token: str,
        lease_owner: str,
        error: JobError,
        retryable: bool = False,
        handback: bool = False,
        usage: Usage | None = None,
        ended_by: str = "",
    ) -> ReportOutcome:
        """Ends the attempt without a result: requeued (a handback, or retryable with
        attempts left) or failed. `usage` is what the attempt used; it is charged to the
        job's owner once the job ends, or at once if the job was cancelled under this lease
        (then the outcome is `ended`)."""
        reason = "handed back by its worker" if handback else f"retrying: {error.message}"
        outcome = ReportOutcome(
            await self._scripts.fail(
                args=[
                    job_id,
                    token,
                    lease_owner,
                    self._clock(),
                    error.model_dump_json(),
                    int(retryable),
                    int(handback),
                    self._retention_ms,
                    reason[:500],
                    ended_by,
                    usage.model_dump_json() if usage else "",
                ]
            )
        )
        if outcome in (ReportOutcome.requeued, ReportOutcome.failed):
            logger.info(f"job.{outcome.value}", extra={"job_id": job_id})
        return outcome

    async def running(self) -> int:
        """Jobs under a lease now."""
        return await self._redis.zcard(keys.LEASES)

    async def reap(self, *, limit: int = 500) -> ReapCounts:
        """One pass of the reaper; safe to run from every broker at once."""
        requeued, failed, expired = await self._scripts.reap(
            args=[self._clock(), limit, self._retention_ms]
        )
        counts = ReapCounts(int(requeued), int(failed), int(expired))
        if requeued or failed or expired:
            logger.info(
                "reaper.pass",
                extra={
                    "requeued": counts.requeued,
                    "failed": counts.failed,
                    "expired": counts.expired,
                },
            )
        return counts
