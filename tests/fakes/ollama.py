"""A fake Ollama server: the native API's routes and wire format, deterministic content.

Routes: `GET /` ("Ollama is running"), `GET /api/version`, `GET /api/tags`,
`POST /api/chat`, `POST /api/generate`, `POST /api/embed`, plus the `/_fake/...` control
routes. Replies stream as NDJSON (`stream` defaults to true, as in Ollama), one line per
token and a final `done: true` line with `done_reason`, token counts and durations in ns.
Errors are `{"error": "..."}` with the status Ollama uses; an error while streaming is an
`{"error": ...}` line. Like Ollama (a Go server), the status line waits for the first
token. Sampling options are taken from `options`, so `num_predict` caps the reply
(`done_reason: "length"`).

A chat request with `tools` whose last user message starts with "call " gets a tool call
to the first tool, with arguments `{"text": <the rest of the message>}`.

    python -m tests.fakes.ollama --port 0 [--models a,b] [--tokens-per-s X] ...
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes import (
    FakeResponse,
    FakeState,
    InjectedError,
    RequestRecord,
    control_routes,
    count_tokens,
    dumps,
    embedding,
    main,
    message_text,
    paced,
    reply_tokens,
)

__all__ = ["VERSION", "build_app"]

VERSION = "0.12.6"
_LOAD_NS = 1_000_000  # a warm model: 1 ms to "load"


def build_app(state: FakeState | None = None) -> Starlette:
    """The fake's ASGI app; `state` (a fresh one when None) is also `app.state.fake`."""
    state = state or FakeState()

    async def root(request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(request: Request) -> Response:
        return JSONResponse({"version": VERSION})

    async def tags(request: Request) -> Response:
        return JSONResponse({"models": [_model_info(name) for name in state.config.models]})

    async def chat(request: Request) -> Response:
        return await _generate(state, request, chat=True)

    async def generate(request: Request) -> Response:
        return await _generate(state, request, chat=False)

    async def embed(request: Request) -> Response:
        return await _embed(state, request)

    app = Starlette(
        routes=[
            Route("/", root, methods=["GET", "HEAD"]),
            Route("/api/version", version),
            Route("/api/tags", tags),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/generate", generate, methods=["POST"]),
            Route("/api/embed", embed, methods=["POST"]),
            *control_routes(state),
        ]
    )
    app.state.fake = state
    return app


async def _generate(state: FakeState, request: Request, *, chat: bool) -> Response:
    body, record, refusal = await _admit(state, request)
    if refusal is not None:
        return refusal
    model = body["model"]
    if chat:
        messages = body.get("messages") or []
        texts = [message_text(m.get("content")) for m in messages]
        prompt = next(
            (message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
    else:
        prompt = body.get("prompt") or ""
        texts = [body.get("system") or "", prompt]
    record.prompt_tokens = count_tokens(texts)
    tokens = reply_tokens(prompt)
    reason = "stop"
    limit = (body.get("options") or {}).get("num_predict")
    if isinstance(limit, int) and 0 < limit < len(tokens):
        tokens, reason = tokens[:limit], "length"
    tools = body.get("tools") if chat else None
    if tools and prompt.startswith("call "):
        chunks = _tool_call_lines(state, record, model, tools[0], prompt.removeprefix("call "))
    else:
        chunks = _lines(state, record, model, tokens, reason, chat=chat)
    if body.get("stream", True) is False:
        return FakeResponse(state, record, _whole(chunks, chat), whole=True)
    return FakeResponse(
        state, record, chunks, media_type="application/x-ndjson", headers_first=False
    )


async def _lines(
    state: FakeState,
    record: RequestRecord,
    model: str,
    tokens: list[str],
    reason: str,
    *,
    chat: bool,
) -> AsyncIterator[str]:
    started = time.perf_counter_ns()
    first_at = None
    try:
        async for token in paced(state, record, tokens):
            first_at = first_at or time.perf_counter_ns()
            yield _line(_piece(model, token, chat=chat))
    except InjectedError:
        yield _line({"error": state.config.fail_message})
        return
    ended = time.perf_counter_ns()
    first_at = first_at or ended
    record.completion_tokens = len(tokens)
    final = _piece(model, "", chat=chat)
    final["done"] = True
    final["done_reason"] = reason
    if not chat:
        final["context"] = [1, 2, 3]
    final |= {
        "total_duration": ended - started + _LOAD_NS,
        "load_duration": _LOAD_NS,
        "prompt_eval_count": record.prompt_tokens,
        "prompt_eval_duration": max(first_at - started, 1),
        "eval_count": record.completion_tokens,
        "eval_duration": max(ended - first_at, 1),
    }
    record.final = final
    yield _line(final)


async def _tool_call_lines(
    state: FakeState, record: RequestRecord, model: str, tool: dict[str, Any], text: str
) -> AsyncIterator[str]:
    started = time.perf_counter_ns()
    name = (tool.get("function") or {}).get("name", "")
    call = {
        "id": "call_" + hashlib.sha256(text.encode()).hexdigest()[:8],
        "function": {"index": 0, "name": name, "arguments": {"text": text}},
    }
    piece = _piece(model, "", chat=True)
    piece["message"]["tool_calls"] = [call]
    yield _line(piece)
    ended = time.perf_counter_ns()
    record.completion_tokens = count_tokens([text]) + 1
    final = _piece(model, "", chat=True) | {
        "done": True,
        "done_reason": "stop",
        "total_duration": ended - started + _LOAD_NS,
        "load_duration": _LOAD_NS,
        "prompt_eval_count": record.prompt_tokens,
        "prompt_eval_duration": 1,
        "eval_count": record.completion_tokens,
        "eval_duration": max(ended - started, 1),
    }
    record.final = final
    yield _line(final)


async def _whole(lines: AsyncIterator[str], chat: bool) -> AsyncIterator[str]:
    """A streamed reply folded into one object, as `stream: false` returns it."""
    pieces = [json.loads(line) async for line in lines]
    final = pieces[-1]
    if "error" in final:
        yield dumps(final)
        return
    if chat:
        final["message"]["content"] = "".join(p["message"]["content"] for p in pieces)
        calls = [c for p in pieces for c in p["message"].get("tool_calls", [])]
        if calls:
            final["message"]["tool_calls"] = calls
    else:
        final["response"] = "".join(p["response"] for p in pieces)
    yield dumps(final)


async def _embed(state: FakeState, request: Request) -> Response:
    body, record, refusal = await _admit(state, request)
    if refusal is not None:
        return refusal
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return FakeResponse.json(state, record, {"error": "invalid input type"}, 400)
    dim = body.get("dimensions") or state.config.embedding_dim
    record.prompt_tokens = count_tokens(texts)

    async def reply() -> AsyncIterator[str]:
        started = time.perf_counter_ns()
        if state.config.first_token_s:
            await asyncio.sleep(state.config.first_token_s)
        record.final = {
            "model": body["model"],
            "embeddings": [embedding(t, dim) for t in texts],
            "total_duration": time.perf_counter_ns() - started + _LOAD_NS,
            "load_duration": _LOAD_NS,
            "prompt_eval_count": record.prompt_tokens,
        }
        yield dumps(record.final)

    return FakeResponse(state, record, reply(), whole=True)


async def _admit(
    state: FakeState, request: Request
) -> tuple[dict[str, Any], RequestRecord, Response | None]:
    """Read and log a job request; the error reply Ollama would give, if any."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    record = state.record(request, body if isinstance(body, dict) else {})
    config = state.config
    if not isinstance(body, dict):
        return {}, record, FakeResponse.json(state, record, {"error": "invalid JSON body"}, 400)
    model = body.get("model")
    if not model:
        return body, record, FakeResponse.json(state, record, {"error": "model is required"}, 400)
    if _resolve(config.models, model) is None:
        message = f'model "{model}" not found, try pulling it first'
        return body, record, FakeResponse.json(state, record, {"error": message}, 404)
    if config.fail_status is not None:
        reply = {"error": config.fail_message}
        return body, record, FakeResponse.json(state, record, reply, config.fail_status)
    return body, record, None


def _resolve(models: list[str], name: str) -> str | None:
    """Ollama's names default to the `latest` tag: "llama3" is "llama3:latest"."""
    for model in models:
        if name in (model, f"{model}:latest") or model == f"{name}:latest":
            return model
    return None


def _piece(model: str, text: str, *, chat: bool) -> dict[str, Any]:
    piece: dict[str, Any] = {"model": model, "created_at": _now()}
    if chat:
        piece["message"] = {"role": "assistant", "content": text}
    else:
        piece["response"] = text
    piece["done"] = False
    return piece


def _line(value: dict[str, Any]) -> str:
    return dumps(value) + "\n"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _model_info(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-05-10T08:06:48.639712648-07:00",
        "size": 1_000_000,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "fake",
            "families": ["fake"],
            "parameter_size": "1B",
            "quantization_level": "Q4_K_M",
        },
    }


if __name__ == "__main__":
    main("ollama", build_app, sys.argv[1:])
