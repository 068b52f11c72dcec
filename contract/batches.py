"""Batches, as OpenAI's Batch API describes them."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from ._base import In, Out
from .jobs import MAX_WAIT_S, Metadata

__all__ = [
    "BATCH_ENDPOINTS",
    "FINAL_BATCH_STATUSES",
    "MAX_BATCH_FILE_BYTES",
    "MAX_BATCH_REQUESTS",
    "Batch",
    "BatchCreate",
    "BatchError",
    "BatchErrors",
    "BatchList",
    "BatchListQuery",
    "BatchRequestCounts",
    "BatchStatus",
    "BatchWaitQuery",
]

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024


class BatchStatus(StrEnum):
    validating = "validating"
    failed = "failed"  # the input file did not validate
    in_progress = "in_progress"  # its jobs are queued or running
    finalizing = "finalizing"  # every job ended; the output files are being written
    completed = "completed"
    expired = "expired"  # some jobs did not start within the completion window
    cancelling = "cancelling"
    cancelled = "cancelled"


# Statuses a batch never leaves; its output and error files are written by then.
FINAL_BATCH_STATUSES = frozenset(
    {BatchStatus.completed, BatchStatus.expired, BatchStatus.cancelled, BatchStatus.failed}
)


class BatchCreate(In):
    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    completion_window: Literal["24h"] = "24h"
    metadata: Metadata | None = None


class BatchRequestCounts(Out):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(Out):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(Out):
    object: Literal["list"] = "list"
    data: list[BatchError]


class Batch(Out):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str = "24h"
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = Field(default_factory=BatchRequestCounts)
    metadata: dict[str, str] | None = None
    waiting_reason: str | None = Field(
        None,
        description="garage's own: why the batch's queued requests are not running now "
        "(no live worker serves one of its models); they wait for one until the batch "
        "expires. Null while nothing holds them up.",
    )


class BatchList(Out):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchListQuery(In):
    """`GET /v1/batches?limit=&after=`."""

    limit: int = Field(20, ge=1, le=100)
    after: str | None = Field(None, max_length=64, description="Last id of the previous page.")


class BatchWaitQuery(In):
    """`GET /v1/batches/{id}?wait_s=&after_done=`: a long-poll on the batch's progress."""

    wait_s: float = Field(
        0, ge=0, le=MAX_WAIT_S, description="Wait up to this long (seconds) for a change."
    )
    after_done: int | None = Field(
        None,
        ge=0,
        description="Answer as soon as more than this many requests ended (completed + "
        "failed); unset: only once the batch reaches a final status.",
    )
