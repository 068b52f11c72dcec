"""Batches in Redis: a record with live counts, its jobs in input order, and the writing
of its output and error files once every job has ended.

A batch is created whole or not at all. `stage` writes its jobs in chunks where nothing
reads them (`stage_batch.lua`: job hashes, the job list and staging sets, all with a TTL),
then `commit` makes all of them live in one script (`commit_batch.lua`), with the record.
A broker that dies before the commit leaves only staged keys, which expire by themselves.

Counting happens in the Lua scripts (`count_for_batch` in `lib.lua`), as each job ends, so
the counts are exact with any number of brokers; each change is published on the batch's
channel for the requests that wait on it. The last job to end queues the batch in
`garage:batches:finalize`; `claim_batch.lua` hands it to one broker at a time to write the
files. Writing is idempotent, so a broker that dies mid-way only delays it. Once written,
the batch and its job list expire after the retention time, as its jobs and files do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from garage.contract import (
    Batch,
    BatchCreate,
    BatchRequestCounts,
    BatchStatus,
    ErrorCode,
    JobCreate,
    JobError,
    JobErrorType,
)
from garage.contract.batch_file import output_line

from ..clock import Clock
from ..ids import new_id
from . import keys
from .files import FileStore
from .jobs import new_job_id, staged_job_args
from .listing import newest_first
from .quotas import NO_LIMITS, Limits, QuotaRefused
from .scripts import Scripts

__all__ = ["STAGING_TTL_MS", "BatchNotCommitted", "BatchStore", "StagedBatch"]

logger = logging.getLogger(__name__)

_WINDOW_MS = 24 * 3600 * 1000
_READ_CHUNK = 1000
_STAGE_CHUNK = 500  # jobs per stage_batch.lua call
# How long staged jobs wait for their commit before Redis drops them: far longer than any
# staging takes, short enough that a broker that died mid-way leaves nothing for long.
STAGING_TTL_MS = 3600 * 1000
_CANCEL_ERROR = JobError(
    message="the batch was cancelled", type=JobErrorType.cancelled, code=ErrorCode.batch_cancelled
).model_dump_json()
_TIMESTAMPS = (
    "created", "in_progress", "expires", "finalizing", "completed", "failed", "expired",
    "cancelling", "cancelled",
)  # fmt: skip


class BatchNotCommitted(RuntimeError):
    """The staged jobs did not add up to the batch (a chunk lost on the way, or staged
    longer than the staging TTL): nothing was made live."""


@dataclass(frozen=True)
class StagedBatch:
    """A batch whose jobs are staged, waiting for `BatchStore.commit`."""

    batch_id: str
    owner: str
    total: int
    record: dict[str, Any]  # the batch's hash, as the commit writes it


class BatchStore:
    def __init__(
        self,
        redis: Any,
        scripts: Scripts,
        clock: Clock,
        files: FileStore,
        *,
        retention_ms: int,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._clock = clock
        self._files = files
        self._retention_ms = retention_ms

    async def create(
        self,
        owner: str,
        spec: BatchCreate,
        specs: Sequence[JobCreate],
        limits: Limits = NO_LIMITS,
    ) -> Batch:
        """Records the batch and queues its jobs (already validated), all at once; raises
        QuotaRefused when the owner is over `limits` (a batch is one submit)."""
        staged = await self.stage(owner, spec, specs)
        batch = await self.commit(staged, limits)
        logger.info("batch.created", extra={"batch_id": batch.id, "total": len(specs)})
        return batch

    async def stage(self, owner: str, spec: BatchCreate, specs: Sequence[JobCreate]) -> StagedBatch:
        """Writes the batch's jobs where no poll, index or reader finds them, expiring
        unless `commit` runs within the staging TTL."""
        now_ms = self._clock()
        batch_id = "batch_" + new_id("b", now_ms).removeprefix("b_")
        record = {
            "id": batch_id, "owner": owner, "endpoint": spec.endpoint,
            "input_file_id": spec.input_file_id, "completion_window": spec.completion_window,
            "status": BatchStatus.in_progress.value, "created_ms": now_ms,
            "in_progress_ms": now_ms, "expires_ms": now_ms + _WINDOW_MS,
            "total": len(specs), "completed": 0, "failed": 0,
            "metadata": json.dumps(spec.metadata) if spec.metadata is not None else "",
            "models": json.dumps(sorted({job.model for job in specs})),
        }  # fmt: skip
        staging_keys = [
            keys.batch_jobs(batch_id),
            keys.batch_staged_queues(batch_id),
            keys.batch_staged_queue_prefix(batch_id),
            keys.batch_staged_start_deadlines(batch_id),
        ]
        for start in range(0, len(specs), _STAGE_CHUNK):
            now_ms = self._clock()
            args: list[Any] = [batch_id, owner, now_ms, STAGING_TTL_MS, *staging_keys]
            for job_spec in specs[start : start + _STAGE_CHUNK]:
                args += staged_job_args(new_job_id(now_ms), job_spec, now_ms)
            await self._scripts.stage_batch(args=args)
        return StagedBatch(batch_id, owner, len(specs), record)

    async def commit(self, staged: StagedBatch, limits: Limits = NO_LIMITS) -> Batch:
        """Makes a staged batch live in one script: the record, every job claimable; or
        raises QuotaRefused, the owner being over `limits`, and makes nothing live."""
        batch_id, owner = staged.batch_id, staged.owner
        args: list[Any] = [
            batch_id,
            staged.record["created_ms"],
            staged.total,
            keys.batch(batch_id),
            keys.batch_jobs(batch_id),
            keys.owner_batches(owner),
            keys.owner_jobs(owner),
            keys.ALL_JOBS,
            keys.batch_staged_queues(batch_id),
            keys.batch_staged_queue_prefix(batch_id),
            keys.batch_staged_start_deadlines(batch_id),
            owner,
            *limits.args(),
        ]
        for field, value in staged.record.items():
            args += [field, value]
        outcome = await self._scripts.commit_batch(args=args)
        if outcome == "incomplete":
            raise BatchNotCommitted(f"batch {batch_id}: not all of its jobs are staged")
        if outcome.startswith(("rate:", "active:")):
            raise QuotaRefused(*outcome.split(":"))
        found = await self.get(batch_id)
        assert found is not None
        return found[1]

    async def get(self, batch_id: str) -> tuple[str, Batch] | None:
        """The batch's owner and the batch, counts as of now."""
        fields = await self._redis.hgetall(keys.batch(batch_id))
        return (fields["owner"], _batch(fields)) if fields else None

    async def models(self, batch_id: str) -> list[str]:
        """The models the batch's requests name."""
        return json.loads(await self._redis.hget(keys.batch(batch_id), "models") or "[]")

    async def list(self, owner: str, *, limit: int, after: str | None) -> tuple[list[Batch], bool]:
        """The owner's batches newest first; `after` is the last id of the previous page."""
        return await newest_first(
            self._redis,
            keys.owner_batches(owner),
            keys.batch,
            _batch,
            limit=limit,
            after=after,
            chunk=limit + 1,
        )

    async def cancel(self, batch_id: str) -> None:
        """Cancels the batch's jobs that have not ended; the finalizer then writes what
        finished and marks the batch cancelled."""
        key = keys.batch(batch_id)
        if await self._redis.hget(key, "status") != BatchStatus.in_progress.value:
            return
        await self._redis.hset(
            key, mapping={"status": BatchStatus.cancelling.value, "cancelling_ms": self._clock()}
        )
        now_ms = self._clock()
        async for ids in self._job_ids(batch_id):
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    await self._scripts.cancel(
                        args=[job_id, now_ms, self._retention_ms, _CANCEL_ERROR], client=pipe
                    )
                await pipe.execute()
        logger.info("batch.cancelling", extra={"batch_id": batch_id})

    async def _job_ids(self, batch_id: str) -> AsyncIterator[list[str]]:
        """The batch's job ids in input order, a chunk at a time."""
        start = 0
        while ids := await self._redis.lrange(
            keys.batch_jobs(batch_id), start, start + _READ_CHUNK - 1
        ):
            yield ids
            start += len(ids)

    async def claim_finished(self, *, claim_ms: int = 60_000) -> str | None:
        return await self._scripts.claim_batch(args=[self._clock(), claim_ms])

    async def finalize(self, batch_id: str) -> None:
        """Writes the output and error files in input order and gives the batch its final
        status. Safe to repeat."""
        key = keys.batch(batch_id)
        fields = await self._redis.hgetall(key)
        if not fields or fields["status"] not in (
            BatchStatus.finalizing.value,
            BatchStatus.cancelling.value,
        ):
            await self._redis.zrem(keys.BATCHES_TO_FINALIZE, batch_id)
            return
        outputs, errors, expired = await self._results(batch_id)
        owner = fields["owner"]
        update: dict[str, Any] = {}
        if outputs:
            output = await self._files.create(
                owner, f"{batch_id}_output.jsonl", "batch_output", "".join(outputs)
            )
            update["output_file_id"] = output.id
        if errors:
            error = await self._files.create(
                owner, f"{batch_id}_error.jsonl", "batch_output", "".join(errors)
            )
            update["error_file_id"] = error.id
        if fields["status"] == BatchStatus.cancelling.value:
            status = BatchStatus.cancelled
        elif expired:
            status = BatchStatus.expired
        else:
            status = BatchStatus.completed
        update.update({"status": status.value, f"{status.value}_ms": self._clock()})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=update)
            pipe.pexpire(key, self._retention_ms)
            pipe.pexpire(keys.batch_jobs(batch_id), self._retention_ms)
            pipe.zrem(keys.BATCHES_TO_FINALIZE, batch_id)
            pipe.publish(keys.batch_channel(batch_id), status.value)
            await pipe.execute()
        logger.info("batch.finalized", extra={"batch_id": batch_id, "status": status.value})

    async def _results(self, batch_id: str) -> tuple[list[str], list[str], bool]:
        outputs: list[str] = []
        errors: list[str] = []
        expired = False
        async for ids in self._job_ids(batch_id):
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(keys.job(job_id), "status", "result", "error", "metadata")
                rows = await pipe.execute()
            for job_id, (status, result, error, metadata) in zip(ids, rows, strict=True):
                custom_id = json.loads(metadata or "{}").get("custom_id")
                line = output_line(
                    job_id,
                    custom_id,
                    status,
                    json.loads(result) if result else None,
                    json.loads(error) if error else None,
                )
                text = json.dumps(line, separators=(",", ":")) + "\n"
                (outputs if status == "succeeded" else errors).append(text)
                expired = expired or status == "expired"
        return outputs, errors, expired


def _batch(fields: dict[str, str]) -> Batch:
    stamps = {
        f"{name}_at": int(fields[f"{name}_ms"]) // 1000
        for name in _TIMESTAMPS
        if fields.get(f"{name}_ms")
    }
    return Batch(
        id=fields["id"],
        endpoint=fields["endpoint"],
        input_file_id=fields["input_file_id"],
        completion_window=fields["completion_window"],
        status=BatchStatus(fields["status"]),
        output_file_id=fields.get("output_file_id") or None,
        error_file_id=fields.get("error_file_id") or None,
        request_counts=BatchRequestCounts(
            total=int(fields["total"]),
            completed=int(fields["completed"]),
            failed=int(fields["failed"]),
        ),
        metadata=json.loads(fields["metadata"]) if fields.get("metadata") else None,
        **stamps,
    )
