"""Events of a job's stream, as sent over SSE by `GET /v1/jobs/{id}/events`.

Each event carries the attempt it belongs to. When a lease is lost and the job goes back to
its queue, a `restart` event tells readers to drop the text of the earlier attempt, so no
reader ever splices two attempts together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from ._base import Out
from .jobs import JobError, JobStatus, Usage

__all__ = [
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "JobEvent",
    "RestartEvent",
    "StatusEvent",
    "job_event_adapter",
]


class StatusEvent(Out):
    type: Literal["status"] = "status"
    status: JobStatus
    attempt: int
    worker: str | None = None


class DeltaEvent(Out):
    type: Literal["delta"] = "delta"
    attempt: int
    text: str


class RestartEvent(Out):
    type: Literal["restart"] = "restart"
    attempt: int = Field(description="The attempt that will produce the text from now on.")
    reason: str


class DoneEvent(Out):
    type: Literal["done"] = "done"
    attempt: int
    result: dict[str, Any] | None = None
    usage: Usage | None = None


class ErrorEvent(Out):
    type: Literal["error"] = "error"
    attempt: int
    status: JobStatus
    error: JobError


JobEvent = Annotated[
    StatusEvent | DeltaEvent | RestartEvent | DoneEvent | ErrorEvent,
    Field(discriminator="type"),
]

job_event_adapter: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)
