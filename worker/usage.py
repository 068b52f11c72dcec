"""What a job used, in tokens, where the backend did not say.

A count the backend reported is taken as it is. A missing one is counted by the backend's
own tokenizer where it exposes one (`Backend.count_tokens`), which is exact, else
estimated from the text's length: one token per `CHARS_PER_TOKEN` characters, rounded up,
so any non-empty text is at least one token. A usage with any estimated count is marked
`estimated`. The texts counted are the prompt's (message contents joined by newlines, a
completion's prompt, an embedding's inputs) and what the model generated (the text it
streamed; on success, every choice's text and tool calls).

The runner asks for the usage of a finished job, and of an attempt that stopped early
(cancelled, failed or handed back after some text), which is charged what it streamed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from garage.contract import Kind, Usage

__all__ = ["CHARS_PER_TOKEN", "UsageCounter", "estimate_tokens", "generated_text", "prompt_text"]

CHARS_PER_TOKEN = 4  # English text runs about 4 characters a token in BPE tokenizers

CountTokens = Callable[[str, str], Awaitable[int | None]]
"""(model, text) -> the tokenizer's count, or None where there is none."""


def estimate_tokens(text: str) -> int:
    """The documented estimate: one token per CHARS_PER_TOKEN characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


class UsageCounter:
    """Fills in the counts a backend left out, with its tokenizer or the estimate."""

    def __init__(self, count_tokens: CountTokens) -> None:
        self._count_tokens = count_tokens

    async def usage(
        self,
        kind: Kind,
        request: dict[str, Any],
        *,
        generated: str,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> Usage:
        """The job's usage: the counts given (the backend's), the others counted from the
        prompt of `request` and the `generated` text."""
        model = request.get("model")
        model = model if isinstance(model, str) else ""
        estimated = False
        if prompt_tokens is None:
            known, text = prompt_text(kind, request)
            counted, guessed = await self._count(model, text)
            prompt_tokens, estimated = known + counted, guessed
        if completion_tokens is None:
            completion_tokens, guessed = await self._count(model, generated)
            estimated = estimated or guessed
        return Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            estimated=estimated,
        )

    async def _count(self, model: str, text: str) -> tuple[int, bool]:
        """(tokens, whether estimated)."""
        if not text:
            return 0, False
        counted = await self._count_tokens(model, text)
        if counted is not None:
            return counted, False
        return estimate_tokens(text), True


def prompt_text(kind: Kind, request: dict[str, Any]) -> tuple[int, str]:
    """The prompt of `request` as (tokens given as token ids, text to count)."""
    if kind is Kind.chat:
        messages = request.get("messages")
        parts = [
            _content_text(message.get("content"))
            for message in messages or []
            if isinstance(message, dict)
        ]
        return 0, "\n".join(part for part in parts if part)
    value = request.get("prompt" if kind is Kind.completion else "input")
    return _inputs(value)


def generated_text(kind: Kind, result: dict[str, Any]) -> str:
    """All the text a finished job generated: every choice's text or message content and
    its tool calls' names and arguments. Nothing for an embedding."""
    if kind is Kind.embedding:
        return ""
    pieces: list[str] = []
    for choice in result.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if kind is Kind.completion:
            pieces.append(_text(choice.get("text")))
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        pieces.append(_content_text(message.get("content")))
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                arguments = function.get("arguments")
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments)
                pieces += [_text(function.get("name")), arguments]
    return "".join(pieces)


def _inputs(value: Any) -> tuple[int, str]:
    """A completion's prompt or an embedding's input: a string, a list of strings, a list
    of token ids, or a list of those lists."""
    if isinstance(value, str):
        return 0, value
    if not isinstance(value, list):
        return 0, ""
    if value and all(isinstance(item, int) for item in value):
        return len(value), ""
    known, texts = 0, []
    for item in value:
        ids, text = _inputs(item)
        known += ids
        if text:
            texts.append(text)
    return known, "\n".join(texts)


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list (images are not counted)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
