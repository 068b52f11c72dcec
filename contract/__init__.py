"""The wire contract between the client, the broker and the worker.

The broker implements these models, the worker and the client consume them; nobody keeps a
copy. Split by resource: jobs, events, workers (poll, leases, fleet), keys, files, batches
(and the batch file format, `batch_file`), usage, contributions (with `days`, the span of
days both report on), errors (with the one list of error codes).
It imports nothing but pydantic, so the broker and the worker load it without the client
SDK's HTTP stack (`tests/unit/test_layers.py` holds it to that).
"""

from importlib.metadata import PackageNotFoundError, version

from .batches import (
    BATCH_ENDPOINTS,
    FINAL_BATCH_STATUSES,
    MAX_BATCH_FILE_BYTES,
    MAX_BATCH_REQUESTS,
    Batch,
    BatchCreate,
    BatchError,
    BatchErrors,
    BatchList,
    BatchListQuery,
    BatchRequestCounts,
    BatchStatus,
    BatchWaitQuery,
)
from .contributions import (
    ContributionGroup,
    ContributionQuery,
    ContributionReport,
    ContributionRow,
    ContributionTotals,
    PointsRule,
)
from .days import DaySpan
from .errors import ErrorBody, ErrorCode, ErrorDetail, JobErrorType
from .events import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    JobEvent,
    RestartEvent,
    StatusEvent,
    job_event_adapter,
)
from .files import FileDeleted, FileList, FileObject
from .jobs import (
    MAX_MODEL_NAME,
    MAX_TOKENS,
    MAX_WAIT_S,
    TERMINAL_STATUSES,
    Job,
    JobCreate,
    JobError,
    JobEventsQuery,
    JobList,
    JobListQuery,
    JobStatus,
    JobWaitQuery,
    Kind,
    Lane,
    Timings,
    Usage,
)
from .keys import KeyCreate, KeyCreated, KeyInfo, KeyLimits, KeyLimitsUpdate, Role
from .models import ModelCard, ModelList
from .openai import InferenceRequest, StreamOptions
from .usage import (
    DEFAULT_USAGE_DAYS,
    MAX_USAGE_DAYS,
    UsageGroup,
    UsageQuery,
    UsageReport,
    UsageRow,
    UsageTotals,
)
from .workers import (
    MAX_POLL_MODELS,
    CompleteReport,
    FailReport,
    GpuInfo,
    GpuLimits,
    Health,
    HealthState,
    Lease,
    LeaseReport,
    PollReply,
    PollRequest,
    QueueInfo,
    QueueList,
    ReportReply,
    WorkerInfo,
    WorkerList,
    WorkerState,
)

try:
    __version__ = version("garage-ai")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "BATCH_ENDPOINTS",
    "DEFAULT_USAGE_DAYS",
    "FINAL_BATCH_STATUSES",
    "MAX_BATCH_FILE_BYTES",
    "MAX_BATCH_REQUESTS",
    "MAX_MODEL_NAME",
    "MAX_POLL_MODELS",
    "MAX_TOKENS",
    "MAX_USAGE_DAYS",
    "MAX_WAIT_S",
    "TERMINAL_STATUSES",
    "Batch",
    "BatchCreate",
    "BatchError",
    "BatchErrors",
    "BatchList",
    "BatchListQuery",
    "BatchRequestCounts",
    "BatchStatus",
    "BatchWaitQuery",
    "CompleteReport",
    "ContributionGroup",
    "ContributionQuery",
    "ContributionReport",
    "ContributionRow",
    "ContributionTotals",
    "DaySpan",
    "DeltaEvent",
    "DoneEvent",
    "ErrorBody",
    "ErrorCode",
    "ErrorDetail",
    "ErrorEvent",
    "FailReport",
    "FileDeleted",
    "FileList",
    "FileObject",
    "GpuInfo",
    "GpuLimits",
    "Health",
    "HealthState",
    "InferenceRequest",
    "Job",
    "JobCreate",
    "JobError",
    "JobErrorType",
    "JobEvent",
    "JobEventsQuery",
    "JobList",
    "JobListQuery",
    "JobStatus",
    "JobWaitQuery",
    "KeyCreate",
    "KeyCreated",
    "KeyInfo",
    "KeyLimits",
    "KeyLimitsUpdate",
    "Kind",
    "Lane",
    "Lease",
    "LeaseReport",
    "ModelCard",
    "ModelList",
    "PointsRule",
    "PollReply",
    "PollRequest",
    "QueueInfo",
    "QueueList",
    "ReportReply",
    "RestartEvent",
    "Role",
    "StatusEvent",
    "StreamOptions",
    "Timings",
    "Usage",
    "UsageGroup",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
    "UsageTotals",
    "WorkerInfo",
    "WorkerList",
    "WorkerState",
    "job_event_adapter",
]
