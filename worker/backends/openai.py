"""OpenAI-compatible servers: vLLM, llama.cpp server, TGI, SGLang, LM Studio, cloud APIs.

Owns the wire format: chat and completion requests go out as they came, plus `stream: true`
and `stream_options.include_usage`; the SSE chunks (parsed by httpx-sse) are assembled back
into one OpenAI-shaped response (text and tool-call fragments joined per choice, the finish
reason, the usage of the last chunk that had one). Embeddings are one plain request.
Connection handling and error classification are `base`'s.

A server that ignores `include_usage` (llama-cpp-python's, older ones) reports no usage:
its counts are None, for the worker to count (`worker/usage.py`) with the server's own
tokenizer where it exposes one (`count_tokens`, `tokenize.py`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource

from garage.contract import Kind

from .base import (
    BackendError,
    BackendResult,
    BackendUnavailable,
    OnText,
    answers,
    error_for_status,
    fetch_body,
    guard,
    open_stream,
    read_body,
    reported_count,
    request_model,
)
from .tokenize import ServerTokenizer

__all__ = ["DEFAULT_URL", "OpenAIBackend", "api_root", "server_root"]

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"


def api_root(base_url: str) -> str:
    """The URL the API paths hang off: a bare `http://host:port` means its `/v1`; a URL
    with a path (`https://openrouter.ai/api/v1`) is used as given."""
    root = base_url.rstrip("/")
    return root + "/v1" if httpx.URL(root).path in ("", "/") else root


def server_root(base_url: str) -> str:
    """Where a server's own routes (vLLM's and llama.cpp's `/tokenize`) hang off: the API
    root without its `/v1`."""
    return api_root(base_url).removesuffix("/v1")


class OpenAIBackend:
    """A server speaking the OpenAI API, local or remote (Bearer `api_key`)."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str = DEFAULT_URL, *, api_key: str | None = None
    ) -> None:
        self._http = http
        self._url = api_root(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._tokenizer = ServerTokenizer(http, server_root(base_url), self._headers)

    async def list_models(self) -> list[str]:
        reply = await self._request_json("GET", "/models")
        return [m["id"] for m in reply.get("data") or [] if isinstance(m, dict) and "id" in m]

    async def ping(self) -> bool:
        return await answers(self._http, self._url + "/models", self._headers)

    async def count_tokens(self, model: str, text: str) -> int | None:
        return await self._tokenizer.count(model, text)

    async def run(
        self, kind: Kind, request: dict[str, Any], on_text: OnText | None = None
    ) -> BackendResult:
        model = request_model(request)
        if kind == Kind.embedding:
            return await self._embed(request)
        path = "/chat/completions" if kind == Kind.chat else "/completions"
        stream_options = request.get("stream_options")
        body = request | {
            "stream": True,
            "stream_options": (stream_options if isinstance(stream_options, dict) else {})
            | {"include_usage": True},
        }
        assembly = _Assembly(kind=Kind(kind), model=model, started=time.perf_counter())
        async with open_stream(
            self._http,
            "POST",
            self._url + path,
            parse_error=_parse_error,
            json=body,
            headers=self._headers | {"Accept": "text/event-stream"},
        ) as response:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignores `stream` answers with the whole response at once.
                assembly.add_whole(_decode(await read_body(response)))
                if on_text is not None and (text := assembly.text(0)):
                    await on_text(text)
            else:
                async with aclosing(guard(EventSource(response).aiter_sse())) as events:
                    async for event in events:
                        if event.data == "[DONE]":
                            assembly.done = True
                            break
                        chunk = _decode(event.data)
                        if "error" in chunk or "error" in (event.event, chunk.get("object")):
                            raise _stream_error(chunk)
                        text = assembly.add(chunk)
                        if text and on_text is not None:
                            await on_text(text)
        if not assembly.finished:
            raise BackendUnavailable("the stream ended before a finish reason or [DONE]")
        return assembly.to_result()

    async def _embed(self, request: dict[str, Any]) -> BackendResult:
        started = time.perf_counter()
        reply = await self._request_json("POST", "/embeddings", json=request)
        wall_ms = (time.perf_counter() - started) * 1000
        if not isinstance(reply.get("data"), list):
            raise BackendUnavailable("the embeddings reply has no `data`")
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        return BackendResult(
            result=reply | {"object": "list"},
            prompt_tokens=reported_count(usage.get("prompt_tokens")),
            completion_tokens=0,  # an embedding generates nothing
            wall_ms=wall_ms,
            backend_ms=wall_ms,
        )

    async def _request_json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = await fetch_body(
            self._http,
            method,
            self._url + path,
            parse_error=_parse_error,
            headers=self._headers,
            **kwargs,
        )
        return _decode(body)


@dataclass
class _Choice:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, choice: dict[str, Any], kind: Kind) -> str:
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        if kind == Kind.completion:
            text = choice.get("text") or ""
        else:
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                self._add_tool_call(call)
        if text:
            self.parts.append(text)
        return text

    def _add_tool_call(self, fragment: dict[str, Any]) -> None:
        # The first fragment of a call brings its id and name, later ones more arguments.
        call = self.tool_calls.setdefault(
            fragment.get("index", len(self.tool_calls)),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if fragment.get("id"):
            call["id"] = fragment["id"]
        function = fragment.get("function") or {}
        if function.get("name"):
            call["function"]["name"] = function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]


@dataclass
class _Assembly:
    """One OpenAI-shaped response, put together from a stream of chunks."""

    kind: Kind
    model: str
    started: float
    head: dict[str, Any] = field(default_factory=dict)
    choices: dict[int, _Choice] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    done: bool = False
    first_text_at: float | None = None

    def add(self, chunk: dict[str, Any]) -> str:
        """Take one chunk; return the text it adds to the first choice."""
        for key in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(key) is not None:
                self.head[key] = chunk[key]
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:  # null on all chunks but the last, if any
            self.usage = usage
        text = ""
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            piece = self.choices.setdefault(index, _Choice()).add(choice, self.kind)
            if index == 0:
                text += piece
        if text and self.first_text_at is None:
            self.first_text_at = time.perf_counter()
        return text

    def add_whole(self, response: dict[str, Any]) -> None:
        """Take a non-streamed response, as if it had come as one chunk."""
        for choice in response.get("choices") or []:
            if self.kind == Kind.chat:
                message = choice.get("message") or {}
                choice = choice | {"delta": message}
                for i, call in enumerate(message.get("tool_calls") or []):
                    call.setdefault("index", i)
            self.add({"choices": [choice]})
        self.add({k: v for k, v in response.items() if k != "choices"})
        self.done = True

    def text(self, index: int) -> str:
        choice = self.choices.get(index)
        return "".join(choice.parts) if choice else ""

    @property
    def finished(self) -> bool:
        # Some servers end without [DONE]; a finish reason on every choice says as much.
        if self.done:
            return True
        return bool(self.choices) and all(c.finish_reason for c in self.choices.values())

    def to_result(self) -> BackendResult:
        ended = time.perf_counter()
        choices = []
        for index in sorted(self.choices) or [0]:
            choice = self.choices.get(index, _Choice())
            text = "".join(choice.parts)
            if self.kind == Kind.chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if choice.tool_calls:
                    message["content"] = text or None
                    message["tool_calls"] = [
                        call | {"id": call["id"] or f"call_{uuid.uuid4().hex[:24]}"}
                        for _, call in sorted(choice.tool_calls.items())
                    ]
                body: dict[str, Any] = {"index": index, "message": message}
            else:
                body = {"index": index, "text": text}
            choices.append(
                body | {"logprobs": None, "finish_reason": choice.finish_reason or "stop"}
            )
        reported = self.usage or {}
        prefix, obj = ("chatcmpl", "chat.completion")
        if self.kind == Kind.completion:
            prefix, obj = ("cmpl", "text_completion")
        result = {
            "id": self.head.get("id") or f"{prefix}-{uuid.uuid4().hex}",
            "object": obj,
            "created": self.head.get("created") or int(time.time()),
            "model": self.head.get("model") or self.model,
            "choices": choices,
            "usage": self.usage,  # None when the server sent none: the worker counts
        }
        if "system_fingerprint" in self.head:
            result["system_fingerprint"] = self.head["system_fingerprint"]
        wall_ms = (ended - self.started) * 1000
        first = self.first_text_at
        return BackendResult(
            result=result,
            prompt_tokens=reported_count(reported.get("prompt_tokens")),
            completion_tokens=reported_count(reported.get("completion_tokens")),
            wall_ms=wall_ms,
            backend_ms=wall_ms,
            first_token_ms=None if first is None else (first - self.started) * 1000,
            eval_ms=None if first is None else (ended - first) * 1000,
        )


def _stream_error(chunk: dict[str, Any]) -> BackendError:
    """The error for an error object inside a stream that began with 200."""
    message, code = _error_fields(chunk)
    status = _int_or_none(code)
    if status is not None and 400 <= status < 600:
        return error_for_status(status, message, str(code))
    return BackendUnavailable(message, code=None if code is None else str(code))


def _parse_error(body: bytes) -> tuple[str, str | None]:
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        message, code = _error_fields(value)
        return message, None if code is None else str(code)
    return body.decode(errors="replace").strip()[:500] or "no error message", None


def _error_fields(value: dict[str, Any]) -> tuple[str, Any]:
    """(message, code) from any of the error bodies these servers send:
    `{"error": {"message", "type", "param", "code"}}` (OpenAI, vLLM, llama.cpp),
    `{"object": "error", "message", ...}` (older vLLM), `{"error": "..."}` (TGI, LM Studio),
    `{"detail": ...}` (FastAPI-based servers)."""
    error = value.get("error", value)
    if isinstance(error, str):
        return error, None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"]), error.get("code")
    if "detail" in value:
        return str(value["detail"]), None
    return json.dumps(value)[:500], None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _decode(raw: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise BackendUnavailable("the reply is not JSON") from None
    if not isinstance(value, dict):
        raise BackendUnavailable("the reply is not a JSON object")
    return value
