"""Turning what a caller hands the client (a prompt, messages, a request) into a job spec."""

from __future__ import annotations

from typing import Any

from garage.contract import JobCreate, Kind, Lane

__all__ = ["JobInput", "kind_of", "text_of", "to_spec"]

JobInput = str | list[dict[str, Any]] | dict[str, Any] | JobCreate
"""A prompt (str), chat messages (list), an OpenAI-shaped request body (dict), or a
ready job spec."""


def kind_of(request: dict[str, Any]) -> Kind:
    """The kind a request body is for, from the field that carries its input."""
    for field, kind in (
        ("messages", Kind.chat),
        ("prompt", Kind.completion),
        ("input", Kind.embedding),
    ):
        if field in request:
            return kind
    raise ValueError("a request needs 'messages' (chat), 'prompt' (completion) or 'input'")


def to_spec(
    model: str,
    item: JobInput,
    *,
    kind: Kind | str | None = None,
    lane: Lane | str = Lane.interactive,
    **options: Any,
) -> JobCreate:
    """The job for `item`; raises pydantic's ValidationError or ValueError if it is bad.

    `options` that are fields of `JobCreate` (max_attempts, timeout_s, metadata, ...) go
    to the job; any other (max_tokens, temperature, ...) goes into the request body, as
    the openai SDK takes them."""
    if isinstance(item, JobCreate):
        return item
    job_options = {k: v for k, v in options.items() if k in JobCreate.model_fields}
    sampling = {k: v for k, v in options.items() if k not in job_options}
    if isinstance(item, str):
        chosen = Kind(kind) if kind else Kind.chat
        field = {Kind.chat: "messages", Kind.completion: "prompt", Kind.embedding: "input"}
        value: Any = [{"role": "user", "content": item}] if chosen is Kind.chat else item
        request = {field[chosen]: value}
    elif isinstance(item, list):
        chosen, request = Kind.chat, {"messages": item}
    elif isinstance(item, dict):
        request = dict(item)
        chosen = Kind(kind) if kind else kind_of(request)
    else:
        raise ValueError(f"cannot make a job of a {type(item).__name__}")
    return JobCreate(
        model=model, kind=chosen, lane=lane, request={**request, **sampling}, **job_options
    )


def text_of(result: dict[str, Any] | None) -> str | None:
    """The generated text of a chat or completion result (None for embeddings)."""
    try:
        choice = (result or {})["choices"][0]
    except (KeyError, IndexError, TypeError):
        return None
    if "message" in choice:
        return choice["message"].get("content")
    return choice.get("text")
