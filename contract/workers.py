"""The worker side of the wire: long-poll, leases, lease reports and the fleet view."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from ._base import In, Out
from .jobs import MAX_MODEL_NAME, MAX_TOKENS, JobError, Kind, Lane, Timings, Usage

__all__ = [
    "MAX_POLL_MODELS",
    "CompleteReport",
    "FailReport",
    "GpuInfo",
    "GpuLimits",
    "Health",
    "HealthState",
    "Lease",
    "LeaseReport",
    "PollReply",
    "PollRequest",
    "QueueInfo",
    "QueueList",
    "ReportReply",
    "WorkerInfo",
    "WorkerList",
    "WorkerState",
]


class HealthState(StrEnum):
    ok = "ok"
    warn = "warn"  # reported, still pulling work
    critical = "critical"  # the worker stops pulling until it clears


# A worker reports its GPUs and health in every poll. The bounds leave room for a rig of
# 64 GPUs with every reason NVML can give; NVML's own names and UUIDs are under 100 chars.
_Reason = Annotated[str, StringConstraints(max_length=1024)]
_ThrottleReason = Annotated[str, StringConstraints(max_length=64)]
_Model = Annotated[str, StringConstraints(max_length=MAX_MODEL_NAME)]
MAX_POLL_MODELS = 256  # models one poll may name


class GpuInfo(Out):
    """One GPU as NVML reads it. Fields NVML cannot read on a device are None."""

    index: int
    uuid: str = Field(max_length=128)
    name: str = Field(max_length=256)
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    throttle_reasons: list[_ThrottleReason] = Field(default_factory=list, max_length=64)
    ecc_uncorrectable: int | None = None


class Health(Out):
    state: HealthState = HealthState.ok
    reasons: list[_Reason] = Field(default_factory=list, max_length=1024)


class GpuLimits(Out):
    """Where the worker judges a GPU hot or full (its GPU thresholds), so that a dashboard
    can draw them; None where the worker has no such threshold."""

    temp_warn_c: float | None = None
    temp_critical_c: float | None = None
    memory_warn_pct: float | None = None


class WorkerState(In):
    """A worker's entry in the fleet view: what it serves, its load and its health. Every
    poll carries it; a heartbeat sends it alone when health changes during a parked poll."""

    worker_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    name: str = Field("", max_length=128)
    models: list[_Model] = Field(max_length=MAX_POLL_MODELS)
    slots_free: int = Field(ge=0, le=1024, description="Jobs the worker can take now.")
    slots_total: int = Field(1, ge=1, le=1024)
    backend: str = Field("", max_length=64)
    version: str = Field("", max_length=64)
    health: Health = Field(default_factory=Health)
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=64)
    gpu_limits: GpuLimits | None = None
    fallback_after_s: float | None = Field(
        None,
        ge=0,
        le=86400,
        description="Take only jobs that waited this long (a fallback worker).",
    )

    @model_validator(mode="after")
    def _free_within_total(self) -> Self:
        if self.slots_free > self.slots_total:
            raise ValueError("slots_free cannot exceed slots_total")
        return self


class PollRequest(WorkerState):
    """A worker asking for work; it also refreshes the worker's entry in the fleet view."""

    wait_s: float = Field(25.0, ge=0, le=60, description="Longest the poll may park.")


class Lease(Out):
    job_id: str
    lease_token: str
    attempt: int
    model: str
    kind: Kind
    lane: Lane
    request: dict[str, Any]
    lease_s: float
    deadline_at: datetime | None = None


class PollReply(Out):
    leases: list[Lease]


class LeaseReport(In):
    """Streamed text and/or a heartbeat; renews the lease.

    A report may be sent again after a broken connection: with `seq`, the broker appends
    its text once however often it arrives, so a retry never doubles streamed text."""

    lease_token: str = Field(min_length=1, max_length=128)
    text: str = Field("", description="Text produced since the last report, in order.")
    seq: int | None = Field(
        None,
        ge=1,
        le=2**53,  # exact as a Lua number
        description="This report's number within the lease (1, 2, ...); a report whose "
        "number is not above the last one applied renews the lease and adds no text.",
    )


def _within_bounds(usage: Usage | None) -> Usage | None:
    if usage is not None and max(usage.prompt_tokens, usage.completion_tokens) > MAX_TOKENS:
        raise ValueError(f"a token count above {MAX_TOKENS}")
    return usage


ReportedUsage = Annotated[Usage | None, AfterValidator(_within_bounds)]


class CompleteReport(In):
    lease_token: str = Field(min_length=1, max_length=128)
    result: dict[str, Any] = Field(description="OpenAI-shaped response body.")
    usage: ReportedUsage = None
    timings: Timings | None = None
    text: str = Field("", description="Trailing streamed text not reported yet.")


class FailReport(In):
    """An attempt that ended without a result: failed, handed back, or stopped because the
    job was cancelled while it ran (then only `usage` counts)."""

    lease_token: str = Field(min_length=1, max_length=128)
    error: JobError
    usage: ReportedUsage = Field(
        None,
        description="What the attempt used before it stopped: its prompt and the text it "
        "streamed. Charged once per lease, and only to the lease's holder.",
    )
    retryable: bool = Field(False, description="Requeue the job if attempts are left.")
    handback: bool = Field(
        False, description="The worker gives the job back unstarted (draining); no attempt used."
    )


class ReportReply(Out):
    cancelled: bool = Field(description="The job was cancelled or ended; stop working on it.")
    accepted: bool = True


class WorkerInfo(Out):
    worker_id: str
    name: str
    owner: str
    models: list[str]
    slots_free: int
    slots_total: int
    backend: str = ""
    version: str = ""
    health: Health = Field(default_factory=Health)
    gpus: list[GpuInfo] = Field(default_factory=list)
    gpu_limits: GpuLimits | None = None
    fallback_after_s: float | None = None
    last_seen_at: datetime
    running: int = 0


class WorkerList(Out):
    object: str = "list"
    data: list[WorkerInfo]


class QueueInfo(Out):
    """One queue that holds jobs: a model's interactive or batch lane."""

    model: str
    lane: Lane
    depth: int = Field(description="Jobs waiting.")
    oldest_at: datetime = Field(description="When the oldest waiting job was submitted.")
    oldest_age_s: float = Field(description="How long the oldest waiting job has waited.")


class QueueList(Out):
    object: str = "list"
    data: list[QueueInfo]
