"""A fake OpenAI-compatible server, shaped like vLLM's: routes, SSE chunks, error bodies.

Routes: `GET /v1/models`, `GET /health`, `POST /v1/chat/completions`,
`POST /v1/completions`, `POST /v1/embeddings`, `POST /tokenize` (with `tokenize` set),
plus the `/_fake/...` control routes.
A streamed reply is SSE: a first chat chunk with `delta.role`, one chunk per token (the
last one carries `finish_reason` and `stop_reason`), then, when the request set
`stream_options.include_usage` (and `include_usage` is on: llama-cpp-python's server never
sends one), a chunk with `choices: []` and `usage`, then `data: [DONE]`.
`/tokenize` speaks llama.cpp's server's format (`{"content", "add_special"}` ->
`{"tokens"}`; a body without `content` gets no tokens, not an error) or vLLM's
(`{"model", "prompt", "add_special_tokens"}` -> `{"count", "max_model_len", "tokens",
"token_strs"}`, BOS first unless `add_special_tokens` is false), a token per word.
Errors are `{"error": {"message", "type", "param", "code"}}` with `code` the HTTP status
(or older vLLM's flat `{"object": "error", ...}` with `legacy_errors`); an error while
streaming is such an object as a data line, followed by `[DONE]`, as vLLM sends it.
`max_tokens` (or `max_completion_tokens`) caps the reply (`finish_reason: "length"`).

A chat request with `tools` whose last user message starts with "call " gets a streamed
tool call to the first tool, with arguments `{"text": <the rest of the message>}`.

With `engine` set (`--max-seqs N --step-ms 20`), the tokens of every reply come from one
continuous-batching engine shared by all requests (`engine.py`), as vLLM's do.

    python -m tests.fakes.openai --port 0 [--models a,b] [--tokens-per-s X] ...
"""

from __future__ import annotations

import asyncio
import base64
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import (
    FakeConfig,
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
    token_ids,
)

__all__ = ["build_app", "error_body"]

_DONE = "data: [DONE]\n\n"
_UNAUTHORIZED = {"error": "Unauthorized"}  # what vLLM's --api-key check answers


def build_app(state: FakeState | None = None) -> Starlette:
    """The fake's ASGI app; `state` (a fresh one when None) is also `app.state.fake`."""
    state = state or FakeState()

    async def models(request: Request) -> Response:
        if _unauthorized(state.config, request):
            return JSONResponse(_UNAUTHORIZED, status_code=401)
        created = int(time.time())
        return JSONResponse(
            {"object": "list", "data": [_model_card(m, created) for m in state.config.models]}
        )

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def chat(request: Request) -> Response:
        return await _complete(state, request, chat=True)

    async def completions(request: Request) -> Response:
        return await _complete(state, request, chat=False)

    async def embeddings(request: Request) -> Response:
        return await _embed(state, request)

    async def tokenize(request: Request) -> Response:
        return await _tokenize(state, request)

    app = Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/health", health),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            *control_routes(state),
        ]
    )
    app.state.fake = state
    return app


def error_body(config: FakeConfig, status: int, message: str, param: str | None = None) -> dict:
    """vLLM's error body for an HTTP status."""
    kind = HTTPStatus(status).phrase.replace(" ", "") + "Error"
    if config.legacy_errors:
        return {"object": "error", "message": message, "type": kind, "param": param, "code": status}
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


async def _complete(state: FakeState, request: Request, *, chat: bool) -> Response:
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
        prompt = prompt[0] if isinstance(prompt, list) and prompt else prompt
        texts = [prompt]
    record.prompt_tokens = count_tokens(texts)
    tokens = reply_tokens(prompt)
    reason = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(tokens):
        tokens, reason = tokens[:limit], "length"
    stream_options = body.get("stream_options") or {}
    with_usage = bool(stream_options.get("include_usage")) and state.config.include_usage
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    tools = body.get("tools") if chat else None
    if tools and prompt.startswith("call "):
        chunks = _tool_call_chunks(state, record, head, tools[0], prompt.removeprefix("call "))
    else:
        chunks = _chunks(state, record, head, tokens, reason, chat=chat)
    if not body.get("stream") or state.config.ignore_stream:
        return FakeResponse(state, record, _whole(record, chunks, chat=chat), whole=True)
    return FakeResponse(
        state,
        record,
        _sse(state, record, head, chunks, with_usage),
        media_type="text/event-stream; charset=utf-8",
    )


async def _chunks(
    state: FakeState,
    record: RequestRecord,
    head: dict[str, Any],
    tokens: list[str],
    reason: str,
    *,
    chat: bool,
) -> AsyncIterator[dict[str, Any]]:
    """The reply's chunks, without the usage chunk and [DONE]."""
    if chat:
        yield head | {"choices": [_chat_choice({"role": "assistant", "content": ""})]}
    i = -1
    async for i, token in _enumerate(paced(state, record, tokens)):
        finish = reason if i == len(tokens) - 1 else None
        if chat:
            yield head | {"choices": [_chat_choice({"content": token}, finish)]}
        else:
            yield head | {"choices": [_text_choice(token, finish)], "usage": None}
    if i < 0:  # nothing generated; the finish reason still comes
        if chat:
            yield head | {"choices": [_chat_choice({}, reason)]}
        else:
            yield head | {"choices": [_text_choice("", reason)], "usage": None}
    record.completion_tokens = len(tokens)


async def _tool_call_chunks(
    state: FakeState, record: RequestRecord, head: dict[str, Any], tool: dict, text: str
) -> AsyncIterator[dict[str, Any]]:
    name = (tool.get("function") or {}).get("name", "")
    yield head | {"choices": [_chat_choice({"role": "assistant", "content": ""})]}
    first = {"id": f"chatcmpl-tool-{uuid.uuid4().hex}", "type": "function", "index": 0}
    yield head | {"choices": [_chat_choice({"tool_calls": [first | {"function": {"name": name}}]})]}
    for fragment in ('{"text": ', dumps(text), "}"):
        call = {"index": 0, "function": {"arguments": fragment}}
        yield head | {"choices": [_chat_choice({"tool_calls": [call]})]}
    yield head | {"choices": [_chat_choice({}, "tool_calls")]}
    record.completion_tokens = count_tokens([text]) + 1


async def _sse(
    state: FakeState,
    record: RequestRecord,
    head: dict[str, Any],
    chunks: AsyncIterator[dict[str, Any]],
    with_usage: bool,
) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield _event(chunk)
    except InjectedError:
        yield _event(error_body(state.config, 500, state.config.fail_message))
        yield _DONE
        return
    if with_usage:
        record.final = head | {"choices": [], "usage": _usage(record)}
        yield _event(record.final)
    yield _DONE


async def _whole(
    record: RequestRecord, chunks: AsyncIterator[dict[str, Any]], *, chat: bool
) -> AsyncIterator[str]:
    """A streamed reply folded into one response, as `stream: false` returns it."""
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    head: dict[str, Any] = {}
    finish = None
    async for chunk in chunks:
        head = {k: chunk[k] for k in ("id", "created", "model")}
        for choice in chunk["choices"]:
            finish = choice.get("finish_reason") or finish
            if not chat:
                parts.append(choice["text"])
                continue
            parts.append(choice["delta"].get("content") or "")
            for call in choice["delta"].get("tool_calls") or []:
                entry = calls.setdefault(call["index"], {"function": {"arguments": ""}})
                entry |= {k: call[k] for k in ("id", "type") if k in call}
                function = call.get("function") or {}
                if "name" in function:
                    entry["function"]["name"] = function["name"]
                entry["function"]["arguments"] += function.get("arguments", "")
    if chat:
        message = {"role": "assistant", "content": "".join(parts), "tool_calls": []}
        if calls:
            message["content"] = None
            message["tool_calls"] = [
                {k: v for k, v in c.items() if k != "index"} for _, c in sorted(calls.items())
            ]
        choice: dict[str, Any] = {"index": 0, "message": message}
        obj = "chat.completion"
    else:
        choice, obj = {"index": 0, "text": "".join(parts)}, "text_completion"
    record.final = head | {
        "object": obj,
        "choices": [choice | {"logprobs": None, "finish_reason": finish, "stop_reason": None}],
        "usage": _usage(record),
    }
    yield dumps(record.final)


async def _embed(state: FakeState, request: Request) -> Response:
    body, record, refusal = await _admit(state, request)
    if refusal is not None:
        return refusal
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        reply = error_body(state.config, 400, "input must be a string or a list of strings")
        return FakeResponse.json(state, record, reply, 400)
    dim = body.get("dimensions") or state.config.embedding_dim
    as_base64 = body.get("encoding_format") == "base64"
    record.prompt_tokens = count_tokens(texts)

    async def reply() -> AsyncIterator[str]:
        if state.config.first_token_s:
            await asyncio.sleep(state.config.first_token_s)
        vectors = [embedding(t, dim) for t in texts]
        record.final = {
            "id": f"embd-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": body["model"],
            "data": [
                {"index": i, "object": "embedding", "embedding": _b64(v) if as_base64 else v}
                for i, v in enumerate(vectors)
            ],
            "usage": {
                "prompt_tokens": record.prompt_tokens,
                "total_tokens": record.prompt_tokens,
                "completion_tokens": 0,
                "prompt_tokens_details": None,
            },
        }
        yield dumps(record.final)

    return FakeResponse(state, record, reply(), whole=True)


_BOS = 1


async def _tokenize(state: FakeState, request: Request) -> Response:
    """llama.cpp's or vLLM's `/tokenize`, or the 404 of a server without one."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    state.record_tokenize(body)
    kind = state.config.tokenize
    if kind is None:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    if kind == "llama.cpp":
        content = body.get("content")
        ids = token_ids(content) if isinstance(content, str) else []
        return JSONResponse({"tokens": ([_BOS] if body.get("add_special") else []) + ids})
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        return JSONResponse(error_body(state.config, 400, "Field required", "prompt"), 400)
    ids = ([_BOS] if body.get("add_special_tokens", True) else []) + token_ids(prompt)
    return JSONResponse({"count": len(ids), "max_model_len": 4096, "tokens": ids,
                         "token_strs": None})  # fmt: skip


async def _admit(
    state: FakeState, request: Request
) -> tuple[dict[str, Any], RequestRecord, Response | None]:
    """Read and log a job request; the error reply vLLM would give, if any."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    record = state.record(request, body if isinstance(body, dict) else {})
    config = state.config
    if _unauthorized(config, request):
        return {}, record, FakeResponse.json(state, record, _UNAUTHORIZED, 401)
    if not isinstance(body, dict):
        reply = error_body(config, 400, "Expecting value: line 1 column 1 (char 0)")
        return {}, record, FakeResponse.json(state, record, reply, 400)
    body.setdefault("model", config.models[0] if config.models else "")  # vLLM's default
    if body["model"] not in config.models:
        reply = error_body(config, 404, f"The model `{body['model']}` does not exist.", "model")
        return body, record, FakeResponse.json(state, record, reply, 404)
    if config.fail_status is not None:
        reply = error_body(config, config.fail_status, config.fail_message)
        return body, record, FakeResponse.json(state, record, reply, config.fail_status)
    return body, record, None


def _unauthorized(config: FakeConfig, request: Request) -> bool:
    return bool(config.api_key) and (
        request.headers.get("authorization") != f"Bearer {config.api_key}"
    )


def _chat_choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return choice | ({"stop_reason": None} if finish else {})


def _text_choice(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "index": 0,
        "text": text,
        "logprobs": None,
        "finish_reason": finish,
        "stop_reason": None,
    }


def _usage(record: RequestRecord) -> dict[str, int]:
    return {
        "prompt_tokens": record.prompt_tokens,
        "total_tokens": record.prompt_tokens + record.completion_tokens,
        "completion_tokens": record.completion_tokens,
    }


def _event(value: dict[str, Any]) -> str:
    return f"data: {dumps(value)}\n\n"


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _model_card(model: str, created: int) -> dict[str, Any]:
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": 4096,
        "permission": [],
    }


async def _enumerate(items: AsyncIterator[str]) -> AsyncIterator[tuple[int, str]]:
    i = 0
    async for item in items:
        yield i, item
        i += 1


if __name__ == "__main__":
    main("openai", build_app, sys.argv[1:])
