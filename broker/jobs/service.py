"""A job's path through this broker on the side of whoever submits it: submit (with the
hand-off to a parked poll), read, wait for the end, follow the event stream, cancel, and
batches of jobs.

The native routes (`api/jobs.py`), the OpenAI routes (`api/openai.py`) and the Batch API
(`api/batches.py`) are thin adapters over `JobService`, so every rule that applies to a
submit has one place to hook in: `_admit` (a model no live worker serves fails fast)
and the key's quotas (`_limits`, enforced atomically by the submit scripts, see
`store/quotas.py`); a batch's jobs come in through `create_batch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

from garage.contract import (
    FINAL_BATCH_STATUSES,
    TERMINAL_STATUSES,
    Batch,
    BatchCreate,
    BatchStatus,
    ErrorCode,
    Job,
    JobCreate,
    JobStatus,
    Lane,
    Role,
)

from ..auth import Principal
from ..clock import Clock
from ..errors import Conflict, NotFound, RateLimited, StoreFull, Unavailable
from ..settings import BrokerSettings
from ..store import Store
from ..store.events import StoredEvent
from ..store.jobs import LeaseTarget, Submitted, new_job_id
from ..store.quotas import Limits, QuotaRefused
from .notify import JobEnd, Notifier

__all__ = ["JobService"]

logger = logging.getLogger(__name__)

_RECHECK_S = 5.0  # a waiter re-reads this often in case a pub/sub message went missing
_SERVED_MAX_AGE_S = 1.0  # how stale the list of served models may be when a submit asks
_ROOM_SEEN_MAX = 10_000  # owners whose room under their quotas this process remembers
_TERMINAL_EVENTS = ("done", "error")


class JobService:
    def __init__(
        self,
        settings: BrokerSettings,
        store: Store,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._background: set[asyncio.Task[Any]] = set()
        # owner -> (submits left a minute or None, jobs active) after its last submit here
        self._last_room: dict[str, tuple[int | None, int | None]] = {}

    # submitting

    def new_id(self) -> str:
        return new_job_id(self._clock())

    async def submit(
        self,
        caller: Principal,
        spec: JobCreate,
        *,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        watched: bool = False,
    ) -> Submitted:
        """Queues a job, or creates an interactive one already leased to a poll parked in
        this process (the hand-off: no wake, no claim). Batch jobs always queue, so
        interactive work waiting elsewhere keeps its precedence. The same idempotency key
        from the same owner returns the earlier job. `watched`: a request in this
        process will wait for the end (see `wait`).

        The poll is answered as soon as a report on the job is sure to find it: once the
        script is written where script calls run in order (`JobStore.in_order`), else
        once it has run."""
        await self._admit(spec)
        if spec.start_timeout_s is None and self._settings.default_start_timeout_s:
            spec = spec.model_copy(
                update={"start_timeout_s": self._settings.default_start_timeout_s}
            )
        owner, limits = caller.id, self._limits(caller)
        job_id = job_id or self.new_id()
        jobs, polls = self._store.jobs, self._notifier.polls
        watcher = self._notifier.process_id if watched else ""
        poll = polls.reserve(spec.model) if spec.lane is Lane.interactive else None
        if poll is None:
            with self._notifier.queueing(job_id):
                submitted = await self._refused_as_429(
                    jobs.submit(
                        owner,
                        spec,
                        job_id=job_id,
                        idempotency_key=idempotency_key,
                        watcher=watcher,
                        limits=limits,
                    )
                )
                if submitted.created:
                    self._notifier.job_queued(spec.model, job_id)
        else:
            target = LeaseTarget(poll.worker_id, poll.lease_owner, self._store.leases.lease_ms)
            outcome: Submitted | None = None
            try:
                pending = jobs.submit(
                    owner,
                    spec,
                    job_id=job_id,
                    idempotency_key=idempotency_key,
                    lease_to=target,
                    watcher=watcher,
                    limits=limits,
                )
                if jobs.in_order and pending.lease is not None and self._room(owner, limits):
                    # The script is written, so any report on the job that reaches this
                    # process runs after it in Redis: the poll answers now, not after
                    # Redis's reply. Should the script find an earlier job for the same
                    # idempotency key instead, the worker's first report gets 404 and it
                    # drops the lease. Only an owner with room under its quotas is handed
                    # early, so a refused submit practically never reaches a worker.
                    polls.hand(poll, pending.lease)
                outcome = await self._refused_as_429(pending)
            finally:
                if poll.reserved:  # not handed yet: calls are not in order, or it failed
                    if outcome is not None and outcome.lease is not None:
                        polls.hand(poll, outcome.lease)
                    else:
                        polls.release(poll)
            submitted = outcome
        if submitted.created:
            self._room_seen(owner, submitted)
        return submitted

    def _limits(self, caller: Principal) -> Limits:
        """The caller's quotas: its key's own, else the broker's defaults (none for an
        admin key that has none of its own)."""
        own = caller.limits
        if caller.role is Role.admin:
            return Limits(own.requests_per_minute, own.max_active_jobs)
        settings = self._settings
        return Limits(
            settings.default_requests_per_minute
            if own.requests_per_minute is None
            else own.requests_per_minute,
            settings.default_max_active_jobs
            if own.max_active_jobs is None
            else own.max_active_jobs,
        )

    def _room(self, owner: str, limits: Limits) -> bool:
        """Whether the owner's last submit here left room for two more under its quotas."""
        if not (limits.requests_per_minute or limits.max_active_jobs):
            return True
        seen = self._last_room.get(owner)
        if seen is None:
            return False
        remaining, active = seen
        if limits.requests_per_minute and (remaining is None or remaining < 2):
            return False
        return not limits.max_active_jobs or (active or 0) + 2 <= limits.max_active_jobs

    def _room_seen(self, owner: str, submitted: Submitted) -> None:
        if len(self._last_room) >= _ROOM_SEEN_MAX:
            self._last_room.clear()
        remaining = submitted.rate.remaining if submitted.rate is not None else None
        self._last_room[owner] = (remaining, submitted.active)

    @staticmethod
    async def _refused_as_429(pending: Awaitable[Submitted]) -> Submitted:
        try:
            return await pending
        except QuotaRefused as refused:
            raise _rate_limited(refused) from None

    async def _admit(self, spec: JobCreate) -> None:
        """Fails fast when the store is nearly full (507) or no live worker serves an
        interactive job's model (503)."""
        self.check_room()
        if spec.lane is not Lane.interactive or spec.wait_for_worker:
            return
        if spec.model not in await self._store.fleet.models(max_age_s=_SERVED_MAX_AGE_S):
            raise Unavailable(
                f"no live worker serves model {spec.model!r} (GET /v1/models lists the models "
                "served now)",
                code=ErrorCode.model_not_served,
                param="model",
                # The openai SDK would retry a 503 for a second or more; retrying cannot help.
                headers={"x-should-retry": "false"},
            )

    def check_room(self) -> None:
        """Refuses new work (507) while the store is nearly full; the work in it runs on
        (`store/capacity.py`)."""
        capacity = self._store.capacity
        if capacity.full:
            raise StoreFull(
                f"the broker's store is nearly full ({capacity.describe()}); new work is "
                "refused until finished jobs pass their retention or the store grows",
                headers={"Retry-After": "30"},
            )

    async def submit_and_wait(
        self,
        caller: Principal,
        spec: JobCreate,
        *,
        wait_s: float,
        idempotency_key: str | None = None,
        stop: asyncio.Future[Any] | None = None,
    ) -> Submitted:
        """`submit`, then `wait` up to `wait_s` (or until `stop` is done) for the end; the
        Submitted's job is the job as it is then."""
        job_id = self.new_id()
        # Listen for the end before the job exists, so no end can slip past unseen.
        with self._notifier.until_ended(job_id) as ended:
            submitted = await self.submit(
                caller, spec, job_id=job_id, idempotency_key=idempotency_key, watched=wait_s > 0
            )
            if submitted.created:
                job = await self.wait(submitted.job, wait_s, ended, fresh=True, stop=stop)
            else:
                with self._notifier.until_ended(submitted.job_id) as earlier_ended:
                    job = await self.wait(submitted.job, wait_s, earlier_ended, stop=stop)
        return dataclasses.replace(submitted, job=job)

    # reading

    async def visible(self, caller: Principal, job_id: str) -> Job:
        """The job, if the caller may see it (its owner, or an admin); else 404."""
        caller.require(Role.user)
        job = await self._store.jobs.get(job_id)
        if job is None or not caller.can_see(job.owner):
            raise NotFound(f"no job {job_id!r}", param="job_id")
        return job

    async def get(self, caller: Principal, job_id: str, *, wait_s: float = 0) -> Job:
        """The job, once it ended or after `wait_s`, whichever comes first."""
        with self._notifier.until_ended(job_id) as ended:
            return await self.wait(await self.visible(caller, job_id), wait_s, ended)

    async def list(
        self,
        caller: Principal,
        *,
        limit: int,
        after: str | None,
        status: JobStatus | None,
        model: str | None,
    ) -> tuple[list[Job], bool]:
        """The caller's jobs newest first (everyone's for an admin)."""
        owner = None if caller.role is Role.admin else caller.id
        return await self._store.jobs.list(
            owner, limit=limit, before=after, status=status, model=model
        )

    async def wait(
        self,
        job: Job,
        wait_s: float,
        ended: JobEnd,
        *,
        fresh: bool = False,
        stop: asyncio.Future[Any] | None = None,
    ) -> Job:
        """The job once it ended, or as it is after `wait_s` (or once `stop` is done).
        `ended` must have been registered (`Notifier.until_ended`) before `job` was read.
        Unless `fresh` (the job was just created with this process as its watcher), the
        job is first marked as watched by this process, so another that ends it publishes
        the end."""
        if wait_s <= 0 or job.status in TERMINAL_STATUSES:
            return job
        deadline = time.monotonic() + wait_s
        jobs = self._store.jobs
        if not fresh:
            status = await jobs.watch(job.id, self._notifier.process_id)
            if status is None or status in TERMINAL_STATUSES:
                return await jobs.get(job.id) or job
        if stop is not None:
            stop.add_done_callback(lambda _: ended.set())
        while not ended.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # asyncio.timeout, not wait_for: this task waits on the end itself, so it runs
            # on the loop's next turn after the end is signalled (see LeaseService.complete).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _RECHECK_S)):
                    await ended.wait()
            if not ended.is_set() and time.monotonic() < deadline:  # a message may be lost
                status = await jobs.status(job.id)
                if status is None or status in TERMINAL_STATUSES:
                    break
        return ended.job or await jobs.get(job.id) or job

    async def follow(self, job_id: str, *, after: str | None = None) -> AsyncIterator[StoredEvent]:
        """The job's events after `after` (from the start when None) as they come, ending
        after its `done` or `error` event, or when the job is gone (retention).

        The stream is read at the start; after that, each new event comes in the message
        that announces it (`StreamReader`), and the stream is read again only when one
        does not follow on from the last (a message was missed) or none came for a while."""
        position = after
        async with self._notifier.stream(job_id) as reader:
            first = True
            while True:
                events = reader.take(position)
                if not events and reader.stale:
                    reader.stale = False
                    events = await self._store.events.read(job_id, after=position)
                for event in events:
                    yield event
                    position = event.id
                    if event.type in _TERMINAL_EVENTS:
                        return
                if events:
                    continue
                if first and position is not None and await self._ended_before(job_id, position):
                    return  # resumed after its last event
                first = False
                if self._notifier.stopping:  # the client resumes elsewhere (Last-Event-ID)
                    return
                reader.changed.clear()
                if reader.stale or reader.has_pushed:
                    continue
                try:
                    async with asyncio.timeout(_RECHECK_S):
                        await reader.changed.wait()
                except TimeoutError:  # a message may be lost, or the job expired
                    if await self._store.jobs.status(job_id) is None:
                        return
                    reader.stale = True

    async def _ended_before(self, job_id: str, position: str) -> bool:
        """Whether the job's last event, at or before `position`, ended its stream."""
        last = await self._store.events.last(job_id)
        return last is not None and last.id == position and last.type in _TERMINAL_EVENTS

    # cancelling

    async def cancel(self, caller: Principal, job_id: str) -> Job:
        """Cancels a queued or running job; a running job's worker learns on its next
        report and aborts the backend request."""
        await self.visible(caller, job_id)
        outcome = await self._store.jobs.cancel(job_id, ended_by=self._notifier.process_id)
        self._notifier.job_ended(job_id)
        if not outcome.found:
            raise NotFound(f"no job {job_id!r}", param="job_id")
        if outcome.status is not JobStatus.cancelled:
            raise Conflict(
                f"job {job_id} already ended as {outcome.status.value}", code=ErrorCode.job_ended
            )
        return await self.visible(caller, job_id)

    def cancel_soon(self, job_id: str) -> None:
        """Cancels the job from a task of its own: the caller (a request whose client
        left) may itself be cancelled."""
        task = asyncio.create_task(self._store.jobs.cancel(job_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # batches

    async def create_batch(
        self, caller: Principal, create: BatchCreate, specs: Sequence[JobCreate]
    ) -> Batch:
        """Records a batch and queues its jobs (already checked) in the batch lane, all at
        once: a broker that dies on the way leaves no part of it. The batch is one submit
        under the caller's quotas, and its jobs count as active."""
        self.check_room()
        try:
            return await self._store.batches.create(caller.id, create, specs, self._limits(caller))
        except QuotaRefused as refused:
            raise _rate_limited(refused) from None

    async def explained(self, batches: Sequence[Batch]) -> list[Batch]:
        """The batches with `waiting_reason` set on each in progress that waits for a
        worker to serve one of its models."""
        explained = []
        for batch in batches:
            if batch.status is BatchStatus.in_progress:
                served = await self._store.fleet.models(max_age_s=_SERVED_MAX_AGE_S)
                unserved = [
                    m for m in await self._store.batches.models(batch.id) if m not in served
                ]
                if unserved:
                    batch = batch.model_copy(update={"waiting_reason": _unserved_reason(unserved)})
            explained.append(batch)
        return explained

    async def wait_batch(self, batch: Batch, *, wait_s: float, after_done: int | None) -> Batch:
        """The batch once more than `after_done` of its requests ended (None: never
        enough) or it reached a final status, or as it is after `wait_s`."""
        if wait_s <= 0 or _batch_answers(batch, after_done):
            return batch
        deadline = time.monotonic() + wait_s
        # Subscribed before the read below, so no change after that read slips past.
        async with self._notifier.batch_changes(batch.id) as changed:
            while True:
                changed.clear()
                found = await self._store.batches.get(batch.id)
                if found is None:  # gone past its retention meanwhile
                    return batch
                batch = found[1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or _batch_answers(batch, after_done) or self._notifier.stopping:
                    return batch
                # Re-read now and then in case a pub/sub message went missing.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, _RECHECK_S)):
                        await changed.wait()


def _unserved_reason(models: Sequence[str]) -> str:
    named = ", ".join(repr(model) for model in models)
    return f"no live worker serves model {named}; its requests wait for one until the batch expires"


def _batch_answers(batch: Batch, after_done: int | None) -> bool:
    """Whether a wait on the batch is over: it reached a final status, or more than
    `after_done` of its requests ended."""
    if batch.status in FINAL_BATCH_STATUSES:
        return True
    counts = batch.request_counts
    return after_done is not None and counts.completed + counts.failed > after_done


def _rate_limited(refused: QuotaRefused) -> RateLimited:
    """The 429 for a submit the scripts refused, with when to retry."""
    if refused.reason == "rate":
        wait_s = refused.retry_ms / 1000
        return RateLimited(
            f"this key's {refused.limit} submits a minute are used up; retry in {wait_s:.1f} s",
            headers={
                "Retry-After": str(max(1, -(-refused.retry_ms // 1000))),
                **refused.rate_state().headers(),
            },
        )
    return RateLimited(
        f"this key has {refused.active} jobs queued or running, its most "
        f"({refused.limit}); submit more once some have ended",
        code=ErrorCode.too_many_active_jobs,
        headers={"Retry-After": str(refused.retry_ms // 1000)},
    )
