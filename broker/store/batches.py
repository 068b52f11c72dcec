"""Batches in Redis: a record with live counts, its jobs in input order, and the writing
of its output and error files once every job has ended.

Counting happens in the Lua scripts (`count_for_batch` in `lib.lua`), as each job ends, so
the counts are exact with any number of brokers. The last job to end queues the batch in
`garage:batches:finalize`; `claim_batch.lua` hands it to one broker at a time to write the
files. Writing is idempotent, so a broker that dies mid-way only delays it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
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

from ..clock import Clock
from ..ids import new_id
from . import keys
from .files import FileStore
from .jobs import JobStore
from .scripts import Scripts

__all__ = ["BatchStore"]

logger = logging.getLogger(__name__)

_WINDOW_MS = 24 * 3600 * 1000
_READ_CHUNK = 1000
_CANCEL_ERROR = JobError(
    message="the batch was cancelled", type=JobErrorType.cancelled, code=ErrorCode.batch_cancelled
).model_dump_json()
_TIMESTAMPS = (
    "created", "in_progress", "expires", "finalizing", "completed", "failed", "expired",
    "cancelling", "cancelled",
)  # fmt: skip


class BatchStore:
    def __init__(
        self,
        redis: Any,
        scripts: Scripts,
        clock: Clock,
        jobs: JobStore,
        files: FileStore,
        *,
        retention_ms: int,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._clock = clock
        self._jobs = jobs
        self._files = files
        self._retention_ms = retention_ms

    async def create(self, owner: str, spec: BatchCreate, specs: Sequence[JobCreate]) -> Batch:
        """Records the batch and queues its jobs (already validated) in the batch lane."""
        now_ms = self._clock()
        batch_id = "batch_" + new_id("b", now_ms).removeprefix("b_")
        record = {
            "id": batch_id, "owner": owner, "endpoint": spec.endpoint,
            "input_file_id": spec.input_file_id, "completion_window": spec.completion_window,
            "status": BatchStatus.in_progress.value, "created_ms": now_ms,
            "in_progress_ms": now_ms, "expires_ms": now_ms + _WINDOW_MS,
            "total": len(specs), "completed": 0, "failed": 0,
            "metadata": json.dumps(spec.metadata) if spec.metadata is not None else "",
        }  # fmt: skip
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.batch(batch_id), mapping=record)
            pipe.zadd(keys.owner_batches(owner), {batch_id: now_ms})
            await pipe.execute()
        # Jobs exist only after the record, so no job can end uncounted.
        job_ids = await self._jobs.submit_many(owner, specs, batch_id=batch_id)
        for start in range(0, len(job_ids), _READ_CHUNK):
            await self._redis.rpush(
                keys.batch_jobs(batch_id), *job_ids[start : start + _READ_CHUNK]
            )
        logger.info("batch.created", extra={"batch_id": batch_id, "total": len(specs)})
        found = await self.get(batch_id)
        assert found is not None
        return found[1]

    async def get(self, batch_id: str) -> tuple[str, Batch] | None:
        """The batch's owner and the batch, counts as of now."""
        fields = await self._redis.hgetall(keys.batch(batch_id))
        return (fields["owner"], _batch(fields)) if fields else None

    async def list(self, owner: str, *, limit: int, after: str | None) -> tuple[list[Batch], bool]:
        index = keys.owner_batches(owner)
        upper = "+inf"
        if after:
            score = await self._redis.zscore(index, after)
            if score is None:
                return [], False
            upper = f"({score:.0f}"
        ids = await self._redis.zrevrangebyscore(index, upper, "-inf", start=0, num=limit + 1)
        batches = []
        for batch_id in ids[:limit]:
            found = await self.get(batch_id)
            if found is not None:
                batches.append(found[1])
        return batches, len(ids) > limit

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
            pipe.zrem(keys.BATCHES_TO_FINALIZE, batch_id)
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
                line = _result_line(job_id, custom_id, status, result, error)
                (outputs if status == "succeeded" else errors).append(line)
                expired = expired or status == "expired"
        return outputs, errors, expired


def _result_line(
    job_id: str,
    custom_id: str | None,
    status: str | None,
    result: str | None,
    error: str | None,
) -> str:
    """One line of OpenAI's batch output format."""
    line: dict[str, Any] = {"id": f"batch_req_{job_id}", "custom_id": custom_id}
    if status == "succeeded":
        line["response"] = {
            "status_code": 200,
            "request_id": job_id,
            "body": json.loads(result or "null"),
        }
        line["error"] = None
        return json.dumps(line, separators=(",", ":")) + "\n"
    detail = json.loads(error) if error else {"message": f"job {status or 'lost'}"}
    if status == "failed":
        code = 400 if detail.get("type") == "backend_rejected" else 500
        line["response"] = {"status_code": code, "request_id": job_id, "body": {"error": detail}}
        line["error"] = None
    else:
        codes = {"expired": "batch_expired", "cancelled": "batch_cancelled"}
        line["response"] = None
        line["error"] = {
            "code": codes.get(status or "", "job_lost"),
            "message": detail.get("message"),
        }
    return json.dumps(line, separators=(",", ":")) + "\n"


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
