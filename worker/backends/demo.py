"""The demo backend: no model at all, so the whole path can be tried on any machine.

`garage up` falls back on it when no Ollama or OpenAI-compatible server answers. It serves
one model, `garage-demo`, whose every reply says plainly that it is the demo and echoes
the prompt, streamed word by word at a steady pace so streaming can be seen. Embeddings are
deterministic unit vectors from a hash of the text. Token counts are word counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
import uuid
from typing import Any

from garage.contract import Kind, Usage

from .base import BackendRejected, BackendResult, OnText, request_model

__all__ = ["DEMO_MODEL", "DemoBackend"]

DEMO_MODEL = "garage-demo"
_PREFIX = "[garage demo backend, not a model] You said:"
_EMBEDDING_DIM = 16


class DemoBackend:
    def __init__(self, *, tokens_per_s: float = 40.0) -> None:
        self._delay_s = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0

    async def list_models(self) -> list[str]:
        return [DEMO_MODEL]

    async def ping(self) -> bool:
        return True

    async def count_tokens(self, model: str, text: str) -> int | None:
        return len(text.split())  # its token is a word

    async def run(
        self, kind: Kind, request: dict[str, Any], on_text: OnText | None = None
    ) -> BackendResult:
        model = request_model(request)
        if model != DEMO_MODEL:
            raise BackendRejected(f"the demo backend serves only {DEMO_MODEL!r}, not {model!r}")
        started = time.monotonic()
        if kind is Kind.embedding:
            return self._embed(request, started)
        prompt = _prompt(kind, request)
        words = re.findall(r"\s*\S+", f"{_PREFIX} {prompt}")
        limit = request.get("max_tokens") or request.get("max_completion_tokens")
        finish = "stop"
        if isinstance(limit, int) and limit < len(words):
            words, finish = words[:limit], "length"
        first_token_ms = None
        for word in words:
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            if first_token_ms is None:
                first_token_ms = (time.monotonic() - started) * 1000
            if on_text is not None:
                await on_text(word)
        text = "".join(words)
        usage = Usage(
            prompt_tokens=len(prompt.split()),
            completion_tokens=len(words),
            total_tokens=len(prompt.split()) + len(words),
        )
        wall_ms = (time.monotonic() - started) * 1000
        return BackendResult(
            result=_response(kind, model, text, finish, usage),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            wall_ms=wall_ms,
            backend_ms=wall_ms,
            first_token_ms=first_token_ms,
        )

    def _embed(self, request: dict[str, Any], started: float) -> BackendResult:
        inputs = request["input"]
        texts = [inputs] if isinstance(inputs, str) else [str(item) for item in inputs]
        tokens = sum(len(text.split()) for text in texts)
        result = {
            "object": "list",
            "model": DEMO_MODEL,
            "data": [
                {"object": "embedding", "index": i, "embedding": _vector(text)}
                for i, text in enumerate(texts)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        wall_ms = (time.monotonic() - started) * 1000
        return BackendResult(
            result=result,
            prompt_tokens=tokens,
            completion_tokens=0,
            wall_ms=wall_ms,
            backend_ms=wall_ms,
        )


def _prompt(kind: Kind, request: dict[str, Any]) -> str:
    if kind is Kind.completion:
        prompt = request["prompt"]
        return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content or "")
    return ""


def _response(kind: Kind, model: str, text: str, finish: str, usage: Usage) -> dict[str, Any]:
    created = int(time.time())
    if kind is Kind.completion:
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
            "usage": usage.model_dump(),
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": usage.model_dump(),
    }


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    values = [b / 127.5 - 1 for b in digest[:_EMBEDDING_DIM]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]
