"""OpenAI's batch file formats: the input, JSONL with one request per line,

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

and the output, one line per request with its response or its error (`output_line`).

Both live here once for every side: the broker's Batch API validates an uploaded file and
writes the output files with them, and the client and `garage job submit` read local files
and build the lines of requests that never reached an output file. Every input problem
names its line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .errors import ErrorCode, JobErrorType
from .jobs import MAX_METADATA_VALUE, JobCreate, JobStatus, Kind, Lane

__all__ = [
    "KIND_URLS",
    "URL_KINDS",
    "BatchLine",
    "BatchLineError",
    "output_line",
    "parse_batch_jsonl",
    "to_job",
]

URL_KINDS = {
    "/v1/chat/completions": Kind.chat,
    "/v1/completions": Kind.completion,
    "/v1/embeddings": Kind.embedding,
}
KIND_URLS = {kind: url for url, kind in URL_KINDS.items()}

# OpenAI's codes for a batch request that never ran: its batch expired or was cancelled.
_NEVER_RAN = {
    JobStatus.expired: ErrorCode.batch_expired,
    JobStatus.cancelled: ErrorCode.batch_cancelled,
}


class BatchLineError(ValueError):
    """A line of a batch file is malformed."""

    def __init__(self, line: int | None, message: str, param: str | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message
        self.param = param


@dataclass(frozen=True)
class BatchLine:
    line: int  # 1-based, as editors count
    custom_id: str
    url: str
    body: dict[str, Any]

    @property
    def kind(self) -> Kind:
        return URL_KINDS[self.url]


def parse_batch_jsonl(
    text: str, *, endpoint: str | None = None, max_requests: int | None = None
) -> list[BatchLine]:
    """Every request of the file, in order; raises BatchLineError at the first bad line."""
    lines: list[BatchLine] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise BatchLineError(
                number, f"not valid JSON at column {exc.colno}: {exc.msg}"
            ) from exc
        except _NotANumber as exc:
            raise BatchLineError(number, f"not valid JSON: {exc}") from exc
        except ValueError as exc:  # an integer past Python's int <-> str digit limit
            raise BatchLineError(number, "not valid JSON: a number has too many digits") from exc
        except RecursionError as exc:
            raise BatchLineError(number, "not valid JSON: nested too deeply") from exc
        if not isinstance(record, dict):
            raise BatchLineError(number, "expected a JSON object")
        custom_id, url, body = record.get("custom_id"), record.get("url"), record.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            raise BatchLineError(number, "'custom_id' must be a non-empty string", "custom_id")
        if len(custom_id) > MAX_METADATA_VALUE:  # it becomes the job's metadata
            raise BatchLineError(
                number, f"'custom_id' is longer than {MAX_METADATA_VALUE} characters", "custom_id"
            )
        if custom_id in seen:
            raise BatchLineError(
                number,
                f"custom_id {custom_id!r} already used on line {seen[custom_id]}",
                "custom_id",
            )
        if record.get("method", "POST") != "POST":
            raise BatchLineError(number, "'method' must be POST", "method")
        if url not in URL_KINDS:
            raise BatchLineError(number, f"'url' must be one of {', '.join(URL_KINDS)}", "url")
        if endpoint is not None and url != endpoint:
            raise BatchLineError(number, f"'url' {url} differs from the batch's {endpoint}", "url")
        if not isinstance(body, dict):
            raise BatchLineError(number, "'body' must be an object", "body")
        seen[custom_id] = number
        lines.append(BatchLine(number, custom_id, url, body))
        if max_requests is not None and len(lines) > max_requests:
            raise BatchLineError(number, f"a batch holds at most {max_requests} requests")
    if not lines:
        raise BatchLineError(None, "the file holds no requests")
    return lines


class _NotANumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotANumber(f"{name} is not a JSON number")


def to_job(line: BatchLine, model: str, **options: Any) -> JobCreate:
    """The job for one line; raises BatchLineError naming the line if the body is bad."""
    body = {k: v for k, v in line.body.items() if k not in ("stream", "stream_options")}
    named = body.pop("model", model)
    if named != model:
        raise BatchLineError(line.line, f"body.model {named!r} differs from {model!r}", "model")
    metadata = {"custom_id": line.custom_id}
    try:
        return JobCreate(
            model=model,
            kind=line.kind,
            lane=Lane.batch,
            request=body,
            metadata=metadata,
            **options,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise BatchLineError(line.line, f"{loc + ': ' if loc else ''}{message}", "body") from exc


def output_line(
    job_id: str | None,
    custom_id: str | None,
    status: JobStatus | str | None,
    result: Any = None,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of OpenAI's batch output format for one request, from its job: the job's
    id (None when no job was made), the request's custom_id, the job's status (None when
    the job is gone), its result, and its error as the job holds it (message, type, code).

    A succeeded job answers 200 with its result; a failed one answers with its error (400
    when the backend refused the request, else 500). A job that never ran gets OpenAI's
    error code for that (batch_expired, batch_cancelled); anything else gets the error's
    own code if it has one, else `unfinished` (still queued or running) or `job_lost`."""
    line: dict[str, Any] = {
        "id": f"batch_req_{job_id}" if job_id else None,
        "custom_id": custom_id,
        "response": None,
        "error": None,
    }
    status = JobStatus(status) if status else None
    if status is JobStatus.succeeded:
        line["response"] = {"status_code": 200, "request_id": job_id, "body": result}
        return line
    detail = dict(error) if error else {"message": f"job {status.value if status else 'lost'}"}
    if status is JobStatus.failed:
        code = 400 if detail.get("type") == JobErrorType.backend_rejected else 500
        line["response"] = {"status_code": code, "request_id": job_id, "body": {"error": detail}}
        return line
    if status in _NEVER_RAN:
        error_code = _NEVER_RAN[status]
    elif detail.get("code"):
        error_code = detail["code"]
    elif status in (JobStatus.queued, JobStatus.running):
        error_code = ErrorCode.unfinished
    else:
        error_code = ErrorCode.job_lost
    line["error"] = {"code": str(error_code), "message": detail.get("message")}
    return line
