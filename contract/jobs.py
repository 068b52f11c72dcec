"""Jobs: what a caller submits and what the broker reports back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, model_validator

from ._base import In, Out

__all__ = [
    "MAX_METADATA_VALUE",
    "MAX_MODEL_NAME",
    "MAX_TOKENS",
    "MAX_WAIT_S",
    "TERMINAL_STATUSES",
    "Job",
    "JobCreate",
    "JobError",
    "JobEventsQuery",
    "JobList",
    "JobListQuery",
    "JobStatus",
    "JobWaitQuery",
    "Kind",
    "Lane",
    "Metadata",
    "Timings",
    "Usage",
]

MAX_MODEL_NAME = 256

# OpenAI's bounds on metadata: 16 pairs, keys up to 64 characters, values up to 512.
MAX_METADATA_VALUE = 512
Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE)],
    ],
    Field(max_length=16),
]
_MAX_ERROR_MESSAGE = 4096


class JobStatus(StrEnum):
    queued = "queued"  # waiting in its model's lane for a worker
    running = "running"  # leased by a worker; the lease is renewed by its reports
    succeeded = "succeeded"  # a worker posted the result under a live lease
    failed = "failed"  # a non-retryable error, or attempts used up
    cancelled = "cancelled"  # cancelled by its owner or an admin
    expired = "expired"  # not started before its start deadline


TERMINAL_STATUSES = frozenset(
    {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.expired}
)


class Lane(StrEnum):
    interactive = "interactive"  # always handed out before batch jobs of the same model
    batch = "batch"


class Kind(StrEnum):
    chat = "chat"  # body of POST /v1/chat/completions
    completion = "completion"  # body of POST /v1/completions
    embedding = "embedding"  # body of POST /v1/embeddings


_REQUIRED_FIELD = {Kind.chat: "messages", Kind.completion: "prompt", Kind.embedding: "input"}


def _check_messages(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of messages"
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"message {i} must be an object with a 'role'"
    return None


def _check_prompt(value: Any) -> str | None:
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(p, str | int) for p in value)
    ):
        return None
    return "must be a string or a non-empty list of strings or token ids"


def _check_input(value: Any) -> str | None:
    if isinstance(value, str) or (isinstance(value, list) and value):
        return None
    return "must be a string or a non-empty list"


_INPUT_CHECKS = {
    Kind.chat: _check_messages,
    Kind.completion: _check_prompt,
    Kind.embedding: _check_input,
}


MAX_TOKENS = 2**40  # the most a worker may report for one count: exact in Lua, far past real


class Usage(Out):
    """Tokens a job used. Counts come from the backend where it reports them, else from
    the backend's tokenizer, else from an estimate (see docs/accounting.md)."""

    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    estimated: bool = Field(
        False,
        description="Some count is an estimate from the text's length: neither the backend "
        "nor its tokenizer gave it.",
    )


class Timings(Out):
    """Milliseconds spent in each phase, measured by the broker and the worker."""

    queued_ms: float | None = Field(None, description="Submit to lease of the final attempt.")
    first_token_ms: float | None = Field(None, description="Lease to first streamed token.")
    run_ms: float | None = Field(None, description="Lease to result of the final attempt.")
    total_ms: float | None = Field(None, description="Submit to the terminal status.")
    backend_ms: float | None = Field(None, description="Time the backend took, as it reports.")


def _cut_message(value: Any) -> Any:
    return value[:_MAX_ERROR_MESSAGE] if isinstance(value, str) else value


class JobError(Out):
    # Cut, not refused: a worker builds this from a backend's or an exception's text, and
    # a refusal would fail the worker's report instead of the job.
    message: Annotated[str, BeforeValidator(_cut_message)]
    type: str = Field("job_error", max_length=64)
    code: str | None = Field(None, max_length=128)


class JobCreate(In):
    """A job to submit. `request` is the OpenAI-shaped body for the job's kind."""

    model: str = Field(
        min_length=1, max_length=MAX_MODEL_NAME, description="Model a worker must serve."
    )
    kind: Kind = Kind.chat
    request: dict[str, Any] = Field(description="OpenAI-shaped request body for `kind`.")
    lane: Lane = Lane.interactive
    max_attempts: int = Field(3, ge=1, le=20, description="Leases tried before failing.")
    start_timeout_s: float | None = Field(
        None, gt=0, le=30 * 86400, description="Expire the job if no worker starts it in time."
    )
    timeout_s: float | None = Field(
        None, gt=0, le=7 * 86400, description="Fail the job if it is not finished in time."
    )
    metadata: Metadata = Field(default_factory=dict)
    wait_for_worker: bool = Field(
        False,
        description="Queue an interactive job even when no live worker serves its model "
        "(otherwise 503 at once). Batch jobs always queue.",
    )

    @model_validator(mode="after")
    def _request_fits_kind(self) -> JobCreate:
        model = self.request.get("model")
        if model is not None and model != self.model:
            raise ValueError(f"request.model {model!r} differs from model {self.model!r}")
        required = _REQUIRED_FIELD[self.kind]
        if required not in self.request:
            raise ValueError(f"a {self.kind.value} request needs a '{required}' field")
        problem = _INPUT_CHECKS[self.kind](self.request[required])
        if problem:
            raise ValueError(f"request.{required}: {problem}")
        return self


class Job(Out):
    id: str
    object: Literal["job"] = "job"
    owner: str
    model: str
    kind: Kind
    lane: Lane
    request: dict[str, Any]
    status: JobStatus
    attempt: int = Field(description="Leases started so far; events carry it.")
    max_attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    start_deadline_at: datetime | None = None
    deadline_at: datetime | None = None
    worker: str | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    batch_id: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def text(self) -> str | None:
        """The generated text of a finished chat or completion job (None otherwise)."""
        try:
            choice = (self.result or {})["choices"][0]
        except (KeyError, IndexError, TypeError):
            return None
        if isinstance(choice.get("message"), dict):
            return choice["message"].get("content")
        return choice.get("text")


class JobList(Out):
    object: Literal["list"] = "list"
    data: list[Job]
    has_more: bool = False
    last_id: str | None = None


MAX_WAIT_S = 60.0  # the longest a request may wait for a job's end


class JobWaitQuery(In):
    """`GET /v1/jobs/{id}?wait_s=`."""

    wait_s: float = Field(0, ge=0, le=MAX_WAIT_S, description="Wait up to this long for the end.")


class JobListQuery(In):
    """`GET /v1/jobs?limit=&after=&status=&model=`."""

    limit: int = Field(20, ge=1, le=100)
    after: str | None = Field(None, max_length=64, description="Last id of the previous page.")
    status: JobStatus | None = None
    model: str | None = Field(None, max_length=256)


class JobEventsQuery(In):
    """`GET /v1/jobs/{id}/events?after=` (or the `Last-Event-ID` header)."""

    after: str | None = Field(None, max_length=64, description="Resume after this event id.")
