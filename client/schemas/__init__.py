"""The wire contract between the client, the broker and the worker.

The broker implements these models, the worker and the client consume them; nobody keeps a
copy. Split by resource: jobs, events, workers (poll, leases, fleet), keys, errors.
"""

from .errors import ErrorBody, ErrorDetail
from .events import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    JobEvent,
    RestartEvent,
    StatusEvent,
    job_event_adapter,
)
from .jobs import (
    TERMINAL_STATUSES,
    Job,
    JobCreate,
    JobError,
    JobList,
    JobStatus,
    Kind,
    Lane,
    Timings,
    Usage,
)
from .keys import KeyCreate, KeyCreated, KeyInfo, Role
from .models import ModelCard, ModelList
from .workers import (
    CompleteReport,
    FailReport,
    GpuInfo,
    Health,
    HealthState,
    Lease,
    LeaseReport,
    PollReply,
    PollRequest,
    ReportReply,
    WorkerInfo,
    WorkerList,
)

__all__ = [
    "TERMINAL_STATUSES",
    "CompleteReport",
    "DeltaEvent",
    "DoneEvent",
    "ErrorBody",
    "ErrorDetail",
    "ErrorEvent",
    "FailReport",
    "GpuInfo",
    "Health",
    "HealthState",
    "Job",
    "JobCreate",
    "JobError",
    "JobEvent",
    "JobList",
    "JobStatus",
    "KeyCreate",
    "KeyCreated",
    "KeyInfo",
    "Kind",
    "Lane",
    "Lease",
    "LeaseReport",
    "ModelCard",
    "ModelList",
    "PollReply",
    "PollRequest",
    "ReportReply",
    "RestartEvent",
    "Role",
    "StatusEvent",
    "Timings",
    "Usage",
    "WorkerInfo",
    "WorkerList",
    "job_event_adapter",
]
