"""OpenAI-compatible inference: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`.

Each request becomes an interactive job and is answered when it ends, or streamed as
OpenAI's SSE chunks when `stream` is set. The rules of the gateway:

- No live worker serves the model: 503 at once, OpenAI's error body.
- A client that goes away cancels its job, streamed or not.
- Never splice: if the worker is lost after text went out, the stream ends with an error
  chunk; a restart before any text is invisible to the client.
- A job the backend rejected is a 400 with the backend's message; other failures are 502
  (the OpenAI SDK retries those).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import ValidationError

from garage.contract import TERMINAL_STATUSES, Job, JobCreate, JobStatus, Kind, Role

from ..auth import Principal
from ..deps import Broker, BrokerDep, Caller
from ..errors import APIError, BadRequest
from ..openai_chunks import delta_chunk, error_payload, final_chunk, usage_chunk
from ..store.jobs import new_job_id
from .jobs import enqueue, require_served

__all__ = ["router"]

router = APIRouter(tags=["openai"])

_MAX_WAIT_S = 600.0  # as long as the OpenAI SDK waits by default
_RECHECK_S = 5.0
_PREFIXES = {Kind.chat: "chatcmpl", Kind.completion: "cmpl", Kind.embedding: "embd"}
_STREAM_FIELDS = ("stream", "stream_options")

OpenAIBody = Annotated[dict[str, Any], Body(description="The OpenAI request body.")]


class _Call:
    """One OpenAI request turned into a job."""

    def __init__(self, broker: Broker, caller: Principal, kind: Kind, body: dict[str, Any]):
        caller.require(Role.user)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", param="model")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("stream must be a boolean", param="stream")
        options = body.get("stream_options") or {}
        self.include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        self.stream = stream and kind is not Kind.embedding
        request = {k: v for k, v in body.items() if k not in _STREAM_FIELDS}
        try:
            self.spec = JobCreate(
                model=model, kind=kind, request=request, start_timeout_s=_MAX_WAIT_S
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            raise BadRequest(message, param=".".join(map(str, first.get("loc", ())))) from exc
        self.broker, self.caller, self.kind, self.model = broker, caller, kind, model
        self.job_id = new_job_id(broker.clock())
        self.chunk_id = f"{_PREFIXES[kind]}-{self.job_id}"
        self.created = int(time.time())

    async def submit(self, *, wait_here: bool = False) -> None:
        """Queues the job; `wait_here`: a request in this process waits for its end."""
        await require_served(self.broker, self.spec)
        watcher = self.broker.notifier.process_id if wait_here else ""
        await enqueue(self.broker, self.caller.id, self.spec, job_id=self.job_id, watcher=watcher)

    def cancel_soon(self) -> None:
        """Cancels the job from a task of its own: the caller may itself be cancelled."""
        task = asyncio.create_task(self.broker.store.jobs.cancel(self.job_id))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def answer(self, request: Request) -> Response:
        """Waits for the end (cancelling the job if the client leaves) and answers it."""
        with self.broker.notifier.until_ended(self.job_id) as ended:
            await self.submit(wait_here=True)
            # A client that leaves wakes the wait too (the status read below tells which);
            # this task waits on the end itself, so it answers on the loop's next turn.
            left = asyncio.ensure_future(_disconnected(request))
            left.add_done_callback(lambda _: ended.set())
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_MAX_WAIT_S):
                        await ended.wait()
            finally:
                left.cancel()
        job = ended.job or await self.broker.store.jobs.get(self.job_id)
        if job is None or job.status not in TERMINAL_STATUSES:
            self.cancel_soon()
            raise APIError("the request ended before its job did", code="cancelled")
        return self._respond(job)

    def _respond(self, job: Job) -> Response:
        if job.status is JobStatus.succeeded and job.result is not None:
            body = dict(job.result)
            if self.kind is not Kind.embedding:
                body["id"] = self.chunk_id
            body["model"] = self.model
            return JSONResponse(body, headers={"x-request-id": job.id})
        status, payload = _failure(job)
        return JSONResponse(payload, status_code=status, headers={"x-request-id": job.id})

    async def events(self) -> AsyncIterator[str]:
        """The job as the data of OpenAI's SSE chunks, ending with `[DONE]`."""
        sent_text = finished = False
        position: str | None = None
        try:
            async with self.broker.notifier.stream(self.job_id) as changed:
                await self.submit()
                while not finished:
                    changed.clear()
                    stored = await self.broker.store.events.read(self.job_id, after=position)
                    for entry in stored:
                        position = entry.id
                        event = json.loads(entry.data)
                        kind = event["type"]
                        if kind == "delta" and event["text"]:
                            yield self._sse(
                                delta_chunk(
                                    self.kind,
                                    self.chunk_id,
                                    self.created,
                                    self.model,
                                    event["text"],
                                    first=not sent_text,
                                )
                            )
                            sent_text = True
                        elif kind == "restart" and sent_text:
                            yield self._sse(
                                error_payload(
                                    f"the worker was lost mid-answer ({event['reason']}); retry",
                                    "server_error",
                                    "worker_lost",
                                )
                            )
                            finished = True
                        elif kind == "done":
                            for chunk in self._closing_chunks(event):
                                yield self._sse(chunk)
                            finished = True
                        elif kind == "error":
                            _, payload = _failure_of(event["status"], event["error"])
                            yield self._sse(payload)
                            finished = True
                        if finished:
                            break
                    if not stored and not finished:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(changed.wait(), _RECHECK_S)
            yield "[DONE]"
        finally:
            if not finished:
                self.cancel_soon()  # the client went away: stop the work

    def _closing_chunks(self, done: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = [
            final_chunk(self.kind, self.chunk_id, self.created, self.model, done.get("result"))
        ]
        if self.include_usage:
            chunks.append(
                usage_chunk(self.kind, self.chunk_id, self.created, self.model, done.get("usage"))
            )
        return chunks

    @staticmethod
    def _sse(payload: dict[str, Any]) -> str:
        return json.dumps(payload, separators=(",", ":"))


_background: set[asyncio.Task[Any]] = set()


def _failure(job: Job) -> tuple[int, dict[str, Any]]:
    error = job.error.model_dump() if job.error else {"message": job.status.value}
    return _failure_of(job.status.value, error)


def _failure_of(status: str, error: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    message = error.get("message") or status
    if error.get("type") == "backend_rejected":
        return 400, error_payload(message, "invalid_request_error", error.get("code"))
    if status == JobStatus.expired:
        return 503, error_payload(message, "service_unavailable", "no_worker_started")
    if status == JobStatus.cancelled:
        return 499, error_payload(message, "cancelled", "cancelled")
    if error.get("code") == "deadline_exceeded":
        return 504, error_payload(message, "timeout", "deadline_exceeded")
    return 502, error_payload(message, "server_error", error.get("code") or "job_failed")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _call_for(kind: Kind):
    async def dependency(body: OpenAIBody, broker: BrokerDep, caller: Caller) -> _Call:
        call = _Call(broker, caller, kind, body)
        if call.stream:  # streams answer 503 before the SSE response starts
            await require_served(broker, call.spec)
        return call

    return dependency


async def _serve(call: _Call, request: Request) -> Any:
    if call.stream:
        return EventSourceResponse(_sse_bytes(call.events()))
    return await call.answer(request)


async def _sse_bytes(events: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for data in events:
        yield format_sse_event(data_str=data)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: Request, call: Annotated[_Call, Depends(_call_for(Kind.chat))]
) -> Response:
    """OpenAI's chat completions, streamed (`stream: true`) or not."""
    return await _serve(call, request)


@router.post("/v1/completions", response_model=None)
async def completions(
    request: Request, call: Annotated[_Call, Depends(_call_for(Kind.completion))]
) -> Response:
    """OpenAI's (legacy) text completions, streamed or not."""
    return await _serve(call, request)


@router.post("/v1/embeddings", response_model=None)
async def embeddings(
    request: Request, call: Annotated[_Call, Depends(_call_for(Kind.embedding))]
) -> Response:
    """OpenAI's embeddings."""
    return await _serve(call, request)
