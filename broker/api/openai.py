"""OpenAI-compatible inference: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`.

Each request becomes an interactive job (through `JobService`) and is answered when it
ends, or streamed as OpenAI's SSE chunks when `stream` is set. The rules of the gateway:

- No live worker serves the model: 503 at once, OpenAI's error body.
- A client that goes away cancels its job, streamed or not.
- Never splice: if the worker is lost after text went out, the stream ends with an error
  chunk; a restart before any text is invisible to the client.
- A job the backend rejected is a 400 with the backend's message; other failures are 502
  (the OpenAI SDK retries those).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.responses import JSONResponse, Response

from garage.contract import (
    TERMINAL_STATUSES,
    ErrorCode,
    InferenceRequest,
    Job,
    JobCreate,
    JobErrorType,
    JobStatus,
    Kind,
    Role,
)

from ..errors import APIError, BadRequest
from ..routing import Call, Endpoint
from ..store.jobs import Submitted
from .openai_chunks import delta_chunk, error_payload, final_chunk, usage_chunk

__all__ = ["endpoints"]

_MAX_WAIT_S = 600.0  # as long as the OpenAI SDK waits by default
_PING_S = 15.0
_PREFIXES = {Kind.chat: "chatcmpl", Kind.completion: "cmpl", Kind.embedding: "embd"}


class _Exchange:
    """One OpenAI request turned into a job."""

    def __init__(self, call: Call[InferenceRequest, None], kind: Kind) -> None:
        body = call.body
        try:
            self.spec = JobCreate(
                model=body.model,
                kind=kind,
                request=body.backend_body(),
                start_timeout_s=_MAX_WAIT_S,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            raise BadRequest(message, param=".".join(map(str, first.get("loc", ())))) from exc
        self.call, self.kind, self.model = call, kind, body.model
        self.stream = body.stream and kind is not Kind.embedding
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self.jobs = call.broker.jobs
        self.job_id = self.jobs.new_id()
        self.chunk_id = f"{_PREFIXES[kind]}-{self.job_id}"
        self.created = int(time.time())

    async def answer(self) -> Response:
        """Waits for the end (cancelling the job if the client leaves) and answers it."""
        left = asyncio.ensure_future(self.call.disconnected())
        try:
            submitted = await self.jobs.submit_and_wait(
                self.call.caller, self.spec, wait_s=_MAX_WAIT_S, stop=left
            )
        finally:
            left.cancel()
        job = submitted.job
        if job.status not in TERMINAL_STATUSES:
            self.jobs.cancel_soon(job.id)
            raise APIError("the request ended before its job did", code=ErrorCode.cancelled)
        return self._respond(job, _headers(submitted))

    def _respond(self, job: Job, headers: dict[str, str]) -> Response:
        if job.status is JobStatus.succeeded and job.result is not None:
            body = dict(job.result)
            if self.kind is not Kind.embedding:
                body["id"] = self.chunk_id
            body["model"] = self.model
            return JSONResponse(body, headers=headers)
        status, payload = _failure(job.status, job.error.model_dump() if job.error else {})
        return JSONResponse(payload, status_code=status, headers=headers)

    async def chunks(self) -> AsyncIterator[str]:
        """The job as the data of OpenAI's SSE chunks, ending with `[DONE]`."""
        sent_text = finished = False
        try:
            async for stored in self.jobs.follow(self.job_id):
                event = stored.event
                kind = event["type"]
                if kind == "delta" and event["text"]:
                    yield _dumps(delta_chunk(self.kind, self.chunk_id, self.created, self.model,
                                             event["text"], first=not sent_text))  # fmt: skip
                    sent_text = True
                elif kind == "restart" and sent_text:
                    yield _dumps(
                        error_payload(
                            f"the worker was lost mid-answer ({event['reason']}); retry",
                            "server_error",
                            ErrorCode.worker_lost,
                        )
                    )
                    finished = True
                    break
                elif kind == "done":
                    for chunk in self._closing_chunks(event):
                        yield _dumps(chunk)
                    finished = True
                elif kind == "error":
                    yield _dumps(_failure(event["status"], event["error"])[1])
                    finished = True
            yield "[DONE]"
        finally:
            if not finished:
                self.jobs.cancel_soon(self.job_id)  # the client went away: stop the work

    def _closing_chunks(self, done: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = [
            final_chunk(self.kind, self.chunk_id, self.created, self.model, done.get("result"))
        ]
        if self.include_usage:
            chunks.append(
                usage_chunk(self.kind, self.chunk_id, self.created, self.model, done.get("usage"))
            )
        return chunks


def _headers(submitted: Submitted) -> dict[str, str]:
    """The job's id, and the key's submit rate as OpenAI's `x-ratelimit-*` headers."""
    headers = {"x-request-id": submitted.job.id}
    if submitted.rate is not None:
        headers.update(submitted.rate.headers())
    return headers


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _failure(status: str, error: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    message = error.get("message") or status
    if error.get("type") == JobErrorType.backend_rejected:
        return 400, error_payload(message, "invalid_request_error", error.get("code"))
    if status == JobStatus.expired:
        return 503, error_payload(message, "service_unavailable", ErrorCode.start_deadline_exceeded)
    if status == JobStatus.cancelled:
        return 499, error_payload(message, "cancelled", ErrorCode.cancelled)
    if error.get("code") == ErrorCode.deadline_exceeded:
        return 504, error_payload(message, "timeout", ErrorCode.deadline_exceeded)
    return 502, error_payload(message, "server_error", error.get("code") or ErrorCode.job_failed)


def _for(kind: Kind) -> Callable[[Call[InferenceRequest, None]], Awaitable[Response]]:
    async def endpoint(call: Call[InferenceRequest, None]) -> Response:
        exchange = _Exchange(call, kind)
        if not exchange.stream:
            return await exchange.answer()
        # Submitted before the stream's response starts, so a refusal (503) is a status.
        submitted = await exchange.jobs.submit(call.caller, exchange.spec, job_id=exchange.job_id)
        return EventSourceResponse(exchange.chunks(), ping=_PING_S, headers=_headers(submitted))

    endpoint.__name__ = f"{kind.value}_endpoint"
    return endpoint


_TAGS = ("openai",)
endpoints = [
    Endpoint("POST", "/v1/chat/completions", _for(Kind.chat),
             "OpenAI's chat completions, streamed (`stream: true`) or not", _TAGS, Role.user,
             body=InferenceRequest),
    Endpoint("POST", "/v1/completions", _for(Kind.completion),
             "OpenAI's (legacy) text completions, streamed or not", _TAGS, Role.user,
             body=InferenceRequest),
    Endpoint("POST", "/v1/embeddings", _for(Kind.embedding), "OpenAI's embeddings", _TAGS,
             Role.user, body=InferenceRequest),
]  # fmt: skip
