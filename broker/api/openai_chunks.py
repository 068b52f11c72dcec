"""OpenAI's streaming chunk shapes, built from a job's events.

`chat.completion.chunk` for chat and `text_completion` chunks for completions, the usage
chunk (empty `choices`) sent when `stream_options.include_usage` is set, and the error
payload a stream ends with instead of splicing two attempts together.
"""

from __future__ import annotations

from typing import Any

from garage.contract import Kind

__all__ = ["delta_chunk", "error_payload", "final_chunk", "usage_chunk"]


def _envelope(kind: Kind, chunk_id: str, created: int, model: str) -> dict[str, Any]:
    obj = "chat.completion.chunk" if kind is Kind.chat else "text_completion"
    return {"id": chunk_id, "object": obj, "created": created, "model": model}


def delta_chunk(
    kind: Kind, chunk_id: str, created: int, model: str, text: str, *, first: bool
) -> dict[str, Any]:
    if kind is Kind.chat:
        delta: dict[str, Any] = (
            {"role": "assistant", "content": text} if first else {"content": text}
        )
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
    return {**_envelope(kind, chunk_id, created, model), "choices": [choice]}


def final_chunk(
    kind: Kind, chunk_id: str, created: int, model: str, result: dict[str, Any] | None
) -> dict[str, Any]:
    """The last chunk with choices: its finish reason, and for chat any tool calls (the
    worker streams only text, so they come whole at the end)."""
    choice0: dict[str, Any] = ((result or {}).get("choices") or [{}])[0]
    finish = choice0.get("finish_reason") or "stop"
    if kind is Kind.chat:
        delta: dict[str, Any] = {}
        calls = (choice0.get("message") or {}).get("tool_calls")
        if calls:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": finish}
    return {**_envelope(kind, chunk_id, created, model), "choices": [choice]}


def usage_chunk(
    kind: Kind, chunk_id: str, created: int, model: str, usage: dict[str, Any] | None
) -> dict[str, Any]:
    usage = usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {**_envelope(kind, chunk_id, created, model), "choices": [], "usage": usage}


def error_payload(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}
