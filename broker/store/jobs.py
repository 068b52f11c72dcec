"""Jobs in Redis: submit, read, list and cancel. Leasing lives in `leases.py`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Generator
from dataclasses import dataclass
from typing import Any

from garage.contract import ErrorCode, Job, JobCreate, JobError, JobErrorType, JobStatus, Lease

from ..clock import Clock, from_ms
from ..ids import new_id, new_token
from . import keys
from .listing import newest_first
from .quotas import NO_LIMITS, Limits, QuotaRefused, RateState
from .scripts import Scripts

__all__ = [
    "CancelOutcome",
    "JobStore",
    "LeaseTarget",
    "PendingSubmit",
    "QueueState",
    "Submitted",
    "new_job_id",
    "staged_job_args",
]

logger = logging.getLogger(__name__)


_CANCEL_ERROR = JobError(
    message="the job was cancelled", type=JobErrorType.cancelled, code=ErrorCode.cancelled
).model_dump_json()


_AGE_WINDOW = 64  # queued jobs next to run whose age `queues` reads


@dataclass(frozen=True)
class QueueState:
    model: str
    lane: str
    depth: int
    oldest_ms: int  # when the oldest job in the queue was submitted


@dataclass(frozen=True)
class LeaseTarget:
    """A parked poll to lease a new job to at once, skipping the queue."""

    worker_id: str
    lease_owner: str
    lease_ms: int


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool  # False when an idempotency key matched an earlier job
    lease: Lease | None = None  # set when the job was leased to a LeaseTarget
    rate: RateState | None = None  # the owner's submit rate after this one, if limited
    active: int | None = None  # the owner's jobs queued or running, this one counted

    @property
    def job_id(self) -> str:
        return self.job.id


class PendingSubmit:
    """A submit whose script is under way. Where script calls run in the order they are
    made (`Scripts.in_order`), the script is already written, so any call this process
    makes from now on runs after it in Redis: a lease handed out now is safe to report
    on. Await it for the outcome: the job as created, or the owner's earlier job with
    the same idempotency key (then the lease was never made)."""

    __slots__ = ("_reply", "job", "lease", "per_minute")

    def __init__(
        self, job: Job, lease: Lease | None, reply: Awaitable[Any], per_minute: int | None
    ) -> None:
        self.job = job
        self.lease = lease
        self._reply = reply
        self.per_minute = per_minute

    def __await__(self) -> Generator[Any, None, Submitted]:
        return self._outcome().__await__()

    async def _outcome(self) -> Submitted:
        reply = await self._reply
        found_id, created = reply[0], reply[1]
        if not found_id:
            raise QuotaRefused(created, reply[2], reply[3])
        flat = reply[2]
        if not int(created):
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            return Submitted(job=job_from_hash(fields), created=False)
        job = self.job
        logger.info(
            "job.submitted", extra={"job_id": found_id, "model": job.model, "lane": job.lane}
        )
        rate = RateState.read(self.per_minute, reply[3], reply[4])
        active = int(reply[5])
        return Submitted(job=job, created=True, lease=self.lease, rate=rate, active=active)


@dataclass(frozen=True)
class CancelOutcome:
    found: bool
    status: JobStatus | None  # the status after the call


# Hash fields that hold JSON text, copied into the job's JSON as they are.
_JSON_FIELDS = ("result", "error", "usage", "timings", "metadata")
# Timestamps in ms, which pydantic reads as such (numbers past 2e10 count as ms, in UTC).
_TIME_FIELDS = (
    ("started_at", "started_ms"),
    ("finished_at", "finished_ms"),
    ("start_deadline_at", "start_deadline_ms"),
    ("deadline_at", "deadline_ms"),
)


def job_from_hash(fields: dict[str, str]) -> Job:
    """The job from its Redis hash. The JSON fields are spliced into one JSON text that
    pydantic parses at once: less than half the time of loading each and building the
    model from Python objects, on every read and every end a submitter waits for."""
    dumps = json.dumps
    parts = [
        '{"id":', dumps(fields["id"]),
        ',"owner":', dumps(fields["owner"]),
        ',"model":', dumps(fields["model"]),
        ',"kind":', dumps(fields["kind"]),
        ',"lane":', dumps(fields["lane"]),
        ',"status":', dumps(fields["status"]),
        ',"request":', fields["request"],
        ',"attempt":', str(int(fields.get("attempt") or 0)),
        ',"max_attempts":', str(int(fields["max_attempts"])),
        ',"created_at":', str(int(fields["created_ms"])),
    ]  # fmt: skip
    for name, key in _TIME_FIELDS:
        if value := fields.get(key):
            parts += [',"', name, '":', str(int(value))]
    for name in ("worker", "batch_id"):
        if value := fields.get(name):
            parts += [',"', name, '":', dumps(value)]
    for name in _JSON_FIELDS:
        value = fields.get(name)
        if value and value != "null":
            parts += [',"', name, '":', value]
    parts.append("}")
    return Job.model_validate_json("".join(parts))


class JobStore:
    def __init__(self, redis: Any, scripts: Scripts, clock: Clock, *, retention_ms: int) -> None:
        self._redis = redis
        self._scripts = scripts
        self._clock = clock
        self._retention_ms = retention_ms

    @property
    def in_order(self) -> bool:
        """Whether a submit's script is written before `submit` returns (see
        `PendingSubmit`)."""
        return self._scripts.in_order

    def submit(
        self,
        owner: str,
        spec: JobCreate,
        *,
        idempotency_key: str | None = None,
        job_id: str | None = None,
        lease_to: LeaseTarget | None = None,
        watcher: str = "",
        limits: Limits = NO_LIMITS,
    ) -> PendingSubmit:
        """Queues the job under `job_id` (a fresh id when None), or with `lease_to` creates
        it leased to that worker; an idempotency key that matches an earlier job of the
        owner returns that job instead (and leases nothing). `watcher` is the process id
        of a broker that waits for the end. Await the result for the outcome (QuotaRefused
        when the owner is over `limits`: no job was made); its `lease` is known before
        (see `PendingSubmit`)."""
        now_ms = self._clock()
        job_id = job_id or new_job_id(now_ms)
        idem = keys.idempotency(owner, idempotency_key) if idempotency_key else ""
        request = {**spec.request, "model": spec.model}
        args = self._submit_args(owner, spec, job_id, now_ms, request, idem=idem, watcher=watcher)
        args += limits.args()
        job = Job(
            id=job_id,
            owner=owner,
            model=spec.model,
            kind=spec.kind,
            lane=spec.lane,
            request=request,
            status=JobStatus.running if lease_to else JobStatus.queued,
            attempt=1 if lease_to else 0,
            max_attempts=spec.max_attempts,
            created_at=from_ms(now_ms),
            started_at=from_ms(now_ms) if lease_to else None,
            start_deadline_at=from_ms(_deadline(now_ms, spec.start_timeout_s)),
            deadline_at=from_ms(_deadline(now_ms, spec.timeout_s)),
            worker=lease_to.worker_id if lease_to else None,
            metadata=spec.metadata,
        )
        lease = None
        if lease_to is not None:
            lease = Lease(
                job_id=job_id,
                lease_token=new_token(),
                attempt=1,
                model=spec.model,
                kind=spec.kind,
                lane=spec.lane,
                request=request,
                lease_s=lease_to.lease_ms / 1000,
                deadline_at=job.deadline_at,
            )
            args[15:19] = [lease_to.worker_id, lease_to.lease_owner, lease.lease_token,
                           lease_to.lease_ms]  # fmt: skip
        reply = self._scripts.submit(args=args)
        return PendingSubmit(job, lease, reply, limits.requests_per_minute or None)

    def _submit_args(
        self,
        owner: str,
        spec: JobCreate,
        job_id: str,
        now_ms: int,
        request: dict[str, Any],
        *,
        idem: str = "",
        watcher: str = "",
    ) -> list[Any]:
        return [
            job_id,
            owner,
            spec.model,
            spec.kind.value,
            spec.lane.value,
            json.dumps(request, separators=(",", ":")),
            spec.max_attempts,
            now_ms,
            _deadline(now_ms, spec.start_timeout_s),
            _deadline(now_ms, spec.timeout_s),
            json.dumps(spec.metadata),
            "",  # batch_id: batch jobs are made by stage_batch.lua
            idem,
            keys.owner_jobs(owner),
            keys.ALL_JOBS,
            "",  # 16-19: the lease when `prepare` leases it directly
            "",
            "",
            "",
            watcher,
        ]

    async def get(self, job_id: str) -> Job | None:
        fields = await self._redis.hgetall(keys.job(job_id))
        return job_from_hash(fields) if fields else None

    async def queues(self) -> list[QueueState]:
        """Every queue that holds jobs: its depth, and when the oldest of the jobs next to
        run was submitted (a queue runs in fair-share order, not arrival order, so this
        looks at the first `_AGE_WINDOW` only: the wait of the jobs about to run)."""
        found: list[tuple[str, str, str]] = []
        async for key in self._redis.scan_iter(match=keys.QUEUE_PREFIX + "*", count=500):
            model, _, lane = key.removeprefix(keys.QUEUE_PREFIX).rpartition(":")
            found.append((key, model, lane))
        if not found:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, _, _ in found:
                pipe.zcard(key)
                pipe.zrange(key, 0, _AGE_WINDOW - 1)
            replies = await pipe.execute()
        heads = {key: replies[2 * i + 1] for i, (key, _, _) in enumerate(found)}
        async with self._redis.pipeline(transaction=False) as pipe:
            for ids in heads.values():
                for job_id in ids:
                    pipe.hget(keys.job(job_id), "created_ms")
            created = iter(await pipe.execute())
        queues = []
        for i, (key, model, lane) in enumerate(found):
            times = [int(t) for t in (next(created) for _ in heads[key]) if t]
            if replies[2 * i] and times:
                queues.append(QueueState(model, lane, replies[2 * i], min(times)))
        return sorted(queues, key=lambda q: (q.model, q.lane))

    async def watch(self, job_id: str, process_id: str) -> JobStatus | None:
        """Marks the job as waited for by broker process `process_id` (so its end is
        published unless that process ends it) and returns its status."""
        value = await self._scripts.watch(args=[job_id, process_id])
        return JobStatus(value) if value else None

    async def status(self, job_id: str) -> JobStatus | None:
        value = await self._redis.hget(keys.job(job_id), "status")
        return JobStatus(value) if value else None

    async def list(
        self,
        owner: str | None,
        *,
        limit: int = 20,
        before: str | None = None,
        status: JobStatus | None = None,
        model: str | None = None,
    ) -> tuple[list[Job], bool]:
        """Jobs newest first; `before` is the id of the last job of the previous page."""

        def build(fields: dict[str, str]) -> Job | None:
            job = job_from_hash(fields)
            wanted = (status is None or job.status == status) and (
                model is None or job.model == model
            )
            return job if wanted else None

        return await newest_first(
            self._redis,
            keys.owner_jobs(owner) if owner else keys.ALL_JOBS,
            keys.job,
            build,
            limit=limit,
            after=before,
            chunk=max(limit * 2, 50),
        )

    async def cancel(self, job_id: str, *, ended_by: str = "") -> CancelOutcome:
        """Cancels a queued or running job; `ended_by` is the calling broker's process id."""
        outcome = await self._scripts.cancel(
            args=[job_id, self._clock(), self._retention_ms, _CANCEL_ERROR, ended_by]
        )
        if outcome == "gone":
            return CancelOutcome(found=False, status=None)
        if outcome == "cancelled":
            logger.info("job.cancelled", extra={"job_id": job_id})
        return CancelOutcome(found=True, status=JobStatus(outcome))


def new_job_id(now_ms: int) -> str:
    return new_id("job", now_ms)


def staged_job_args(job_id: str, spec: JobCreate, now_ms: int) -> list[Any]:
    """One batch job's values for `stage_batch.lua`, which writes the hash `submit.lua`
    writes for a batch job; the same encodings as `JobStore._submit_args`."""
    request = {**spec.request, "model": spec.model}
    return [
        job_id,
        spec.model,
        spec.kind.value,
        spec.lane.value,
        json.dumps(request, separators=(",", ":")),
        spec.max_attempts,
        _deadline(now_ms, spec.start_timeout_s),
        _deadline(now_ms, spec.timeout_s),
        json.dumps(spec.metadata),
    ]


def _deadline(now_ms: int, timeout_s: float | None) -> int | str:
    return now_ms + round(timeout_s * 1000) if timeout_s else ""
