"""Ollama, through its native API: `/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`.

Owns the translation both ways: an OpenAI-shaped request becomes Ollama's body (sampling
parameters move into `options`, content parts become text plus base64 images, tool-call
arguments become objects), and Ollama's NDJSON stream becomes one OpenAI-shaped response
carrying the token counts Ollama reports (`prompt_eval_count`, `eval_count`) and its own
timings. Connection handling and error classification are
`base`'s.

Ollama-only fields a request may carry pass through: `options` (merged last, e.g.
`num_ctx`), `keep_alive`, `think`, and `raw` for completions.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from garage.contract import Kind

from .base import (
    BackendRejected,
    BackendResult,
    BackendUnavailable,
    OnText,
    answers,
    fetch_body,
    guard,
    open_stream,
    reported_count,
    request_model,
)

__all__ = ["DEFAULT_URL", "OllamaBackend"]

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:11434"

# OpenAI request field -> Ollama option. Later entries win, so the newer
# `max_completion_tokens` beats `max_tokens`. The last three are not OpenAI's, but vLLM
# takes them too and clients send them.
_OPTIONS = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("seed", "seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
    ("max_tokens", "num_predict"),
    ("max_completion_tokens", "num_predict"),
    ("top_k", "top_k"),
    ("min_p", "min_p"),
    ("repetition_penalty", "repeat_penalty"),
)
_CHAT_PASSTHROUGH = ("keep_alive", "think")
_GENERATE_PASSTHROUGH = ("keep_alive", "think", "raw", "system")


class OllamaBackend:
    """An Ollama server, spoken to in its native API."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str = DEFAULT_URL, *, api_key: str | None = None
    ) -> None:
        self._http = http
        self._url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def list_models(self) -> list[str]:
        reply = await self._request_json("GET", "/api/tags")
        names = (m.get("model") or m.get("name") for m in reply.get("models") or [])
        return [name for name in names if name]

    async def ping(self) -> bool:
        return await answers(self._http, self._url + "/api/version", self._headers)

    async def count_tokens(self, model: str, text: str) -> int | None:
        return None  # Ollama's API has no tokenizer route; its streams report counts

    async def run(
        self, kind: Kind, request: dict[str, Any], on_text: OnText | None = None
    ) -> BackendResult:
        model = request_model(request)
        if kind == Kind.embedding:
            return await self._embed(model, request)
        if kind == Kind.chat:
            generation = await self._generate("/api/chat", _chat_body(model, request), on_text)
        else:
            generation = await self._generate(
                "/api/generate", _generate_body(model, request), on_text
            )
        return generation.to_result(kind, model)

    async def _generate(self, path: str, body: dict[str, Any], on_text: OnText | None) -> _Stream:
        stream = _Stream(started=time.perf_counter())
        async with (
            open_stream(
                self._http,
                "POST",
                self._url + path,
                parse_error=_parse_error,
                json=body,
                headers=self._headers,
            ) as response,
            aclosing(guard(response.aiter_lines())) as lines,
        ):
            async for line in lines:
                if not line.strip():
                    continue
                chunk = _decode(line)
                if "error" in chunk:
                    # The status line already said 200; a failure while generating is the
                    # backend's, not the job's.
                    raise BackendUnavailable(f"ollama: {chunk['error']}")
                text = stream.add(chunk)
                if text and on_text is not None:
                    await on_text(text)
                if stream.final is not None:
                    break
        if stream.final is None:
            raise BackendUnavailable("ollama: the stream ended before its final `done` line")
        return stream

    async def _embed(self, model: str, request: dict[str, Any]) -> BackendResult:
        body: dict[str, Any] = {"model": model, "input": request.get("input")}
        if request.get("dimensions") is not None:
            body["dimensions"] = request["dimensions"]
        if "keep_alive" in request:
            body["keep_alive"] = request["keep_alive"]
        started = time.perf_counter()
        reply = await self._request_json("POST", "/api/embed", json=body)
        wall_ms = (time.perf_counter() - started) * 1000
        vectors = reply.get("embeddings")
        if not isinstance(vectors, list):
            raise BackendUnavailable("ollama: the embed reply has no `embeddings`")
        as_base64 = request.get("encoding_format") == "base64"
        prompt_tokens = reported_count(reply.get("prompt_eval_count"))
        result = {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": _float32_base64(v) if as_base64 else v,
                }
                for i, v in enumerate(vectors)
            ],
            "model": model,
        }
        if prompt_tokens is not None:
            result["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return BackendResult(
            result=result,
            prompt_tokens=prompt_tokens,
            completion_tokens=0,  # an embedding generates nothing
            wall_ms=wall_ms,
            backend_ms=_ns_to_ms(reply.get("total_duration")) or wall_ms,
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
class _Stream:
    """What an NDJSON generation stream has said so far."""

    started: float
    parts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    first_text_at: float | None = None

    def add(self, chunk: dict[str, Any]) -> str:
        """Take one line; return its text. The final line may carry text too."""
        message = chunk.get("message")
        if isinstance(message, dict):  # /api/chat
            text = message.get("content") or ""
            self.tool_calls.extend(message.get("tool_calls") or [])
        else:  # /api/generate
            text = chunk.get("response") or ""
        if text:
            self.parts.append(text)
            if self.first_text_at is None:
                self.first_text_at = time.perf_counter()
        if chunk.get("done"):
            self.final = chunk
        return text

    def to_result(self, kind: Kind, model: str) -> BackendResult:
        final = self.final or {}
        ended = time.perf_counter()
        # Ollama leaves prompt_eval_count out when the whole prompt came from its cache.
        prompt_tokens = reported_count(final.get("prompt_eval_count"))
        completion_tokens = reported_count(final.get("eval_count"))
        text = "".join(self.parts)
        reason = final.get("done_reason") or "stop"
        if reason not in ("stop", "length"):  # "load"/"unload" only end empty requests
            reason = "stop"
        if kind == Kind.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if self.tool_calls:
                message["tool_calls"] = [_openai_tool_call(c) for c in self.tool_calls]
                message["content"] = text or None
                if reason == "stop":
                    reason = "tool_calls"
            choice: dict[str, Any] = {"index": 0, "message": message}
            head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion"}
        else:
            choice = {"index": 0, "text": text}
            head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion"}
        choice |= {"logprobs": None, "finish_reason": reason}
        wall_ms = (ended - self.started) * 1000
        result = head | {
            "created": int(time.time()),
            "model": final.get("model") or model,
            "choices": [choice],
        }
        if prompt_tokens is not None and completion_tokens is not None:
            result["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return BackendResult(
            result=result,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            wall_ms=wall_ms,
            backend_ms=_ns_to_ms(final.get("total_duration")) or wall_ms,
            first_token_ms=(
                None if self.first_text_at is None else (self.first_text_at - self.started) * 1000
            ),
            eval_ms=_ns_to_ms(final.get("eval_duration")),
        )


def _chat_body(model: str, request: dict[str, Any]) -> dict[str, Any]:
    """Ollama's /api/chat body for an OpenAI chat request."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BackendRejected("`messages` must be a non-empty list")
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(messages),
        "stream": True,
        "options": _options(request),
    }
    if request.get("tools"):
        body["tools"] = request["tools"]  # Ollama takes OpenAI's tool schema as it is
    if (fmt := _format(request.get("response_format"))) is not None:
        body["format"] = fmt
    body |= {k: request[k] for k in _CHAT_PASSTHROUGH if k in request}
    return body


def _generate_body(model: str, request: dict[str, Any]) -> dict[str, Any]:
    """Ollama's /api/generate body for an OpenAI completion request."""
    prompt = request.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BackendRejected("Ollama completes one prompt string per request")
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "stream": True,
        "options": _options(request),
    }
    if request.get("suffix"):
        body["suffix"] = request["suffix"]
    if (fmt := _format(request.get("response_format"))) is not None:
        body["format"] = fmt
    body |= {k: request[k] for k in _GENERATE_PASSTHROUGH if k in request}
    return body


def _options(request: dict[str, Any]) -> dict[str, Any]:
    # OpenAI's defaults, not Ollama's (temperature 0.8): the request is OpenAI-shaped, and
    # Ollama's own /v1 endpoints do the same.
    options: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0}
    for openai_name, ollama_name in _OPTIONS:
        if request.get(openai_name) is not None:
            options[ollama_name] = request[openai_name]
    stop = request.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif stop:
        options["stop"] = list(stop)
    if isinstance(request.get("options"), dict):
        options |= request["options"]
    return options


def _format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    match response_format.get("type"):
        case "json_object":
            return "json"
        case "json_schema":
            return (response_format.get("json_schema") or {}).get("schema")
    return None


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    # Ollama names a tool result by the tool, OpenAI by the id of the call it answers.
    tool_names = {
        call.get("id"): (call.get("function") or {}).get("name")
        for m in messages
        if isinstance(m, dict)
        for call in m.get("tool_calls") or []
    }
    out = []
    for message in messages:
        if not isinstance(message, dict):
            raise BackendRejected("each message must be an object")
        converted: dict[str, Any] = {"role": message.get("role", "user")}
        converted |= _content(message.get("content"))
        if message.get("tool_calls"):
            converted["tool_calls"] = [_ollama_tool_call(c) for c in message["tool_calls"]]
        if converted["role"] == "tool":
            name = message.get("name") or tool_names.get(message.get("tool_call_id"))
            if name:
                converted["tool_name"] = name
        out.append(converted)
    return out


def _content(content: Any) -> dict[str, Any]:
    if content is None or isinstance(content, str):
        return {"content": content or ""}
    if not isinstance(content, list):
        raise BackendRejected("message content must be a string or a list of parts")
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(part.get("text") or "")
        elif kind == "image_url":
            images.append(_image_data(part.get("image_url")))
        else:
            raise BackendRejected(f"Ollama takes no content part of type {kind!r}")
    return {"content": "\n".join(texts)} | ({"images": images} if images else {})


def _image_data(image_url: Any) -> str:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or url.startswith(("http://", "https://")):
        raise BackendRejected("Ollama takes images only as base64 data URLs")
    return url.split(",", 1)[1] if url.startswith("data:") else url


def _ollama_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise BackendRejected("tool call arguments are not valid JSON") from None
    return {"function": {"name": function.get("name", ""), "arguments": arguments}}


def _openai_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": function.get("name", ""),
            "arguments": json.dumps(function.get("arguments") or {}),
        },
    }


def _decode(raw: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise BackendUnavailable("ollama: the reply is not JSON") from None
    if not isinstance(value, dict):
        raise BackendUnavailable("ollama: the reply is not a JSON object")
    return value


def _parse_error(body: bytes) -> tuple[str, str | None]:
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return value["error"], None
    return body.decode(errors="replace").strip()[:500] or "no error message", None


def _ns_to_ms(ns: Any) -> float | None:
    return ns / 1e6 if isinstance(ns, int | float) and ns > 0 else None


def _float32_base64(vector: list[float]) -> str:
    """What OpenAI sends for `encoding_format: base64`: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
