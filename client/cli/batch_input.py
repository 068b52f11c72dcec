"""Reads the input file of `garage job submit`, all of it, before anything is submitted.

Accepted: a JSON array of prompts (strings) or of request bodies (objects with `messages`,
`prompt` or `input`), or JSONL in OpenAI's batch format, one request per line:
`{"custom_id": ..., "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
A problem is reported with the item or line it is on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .._inputs import to_spec
from ..schemas import JobCreate, Lane

__all__ = ["InputError", "InputItem", "read_input"]

_URL_KINDS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completion",
    "/v1/embeddings": "embedding",
}


class InputError(ValueError):
    """The input file is malformed; the message names where."""


@dataclass(frozen=True)
class InputItem:
    custom_id: str
    spec: JobCreate


def read_input(path: Path, model: str, lane: Lane) -> list[InputItem]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it: {exc}") from exc
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    if text.lstrip().startswith("["):
        items = _read_array(path, text, model, lane)
    else:
        items = _read_jsonl(path, text, model, lane)
    seen: set[str] = set()
    for item in items:
        if item.custom_id in seen:
            raise InputError(f"{path}: custom_id {item.custom_id!r} appears twice")
        seen.add(item.custom_id)
    return items


def _read_array(path: Path, text: str, model: str, lane: Lane) -> list[InputItem]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} line {exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(values, list) or not values:
        raise InputError(f"{path}: expected a non-empty JSON array")
    items = []
    for index, value in enumerate(values):
        where = f"{path} item {index}"
        if not isinstance(value, str | dict):
            raise InputError(f"{where}: expected a prompt (string) or a request (object)")
        items.append(InputItem(f"item-{index}", _spec(where, model, value, lane)))
    return items


def _read_jsonl(path: Path, text: str, model: str, lane: Lane) -> list[InputItem]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected an object in OpenAI's batch format")
        custom_id, url, body = record.get("custom_id"), record.get("url"), record.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            raise InputError(f"{where}: 'custom_id' must be a non-empty string")
        if record.get("method", "POST") != "POST":
            raise InputError(f"{where}: 'method' must be POST")
        if url not in _URL_KINDS:
            raise InputError(f"{where}: 'url' must be one of {', '.join(_URL_KINDS)}")
        if not isinstance(body, dict):
            raise InputError(f"{where}: 'body' must be an object")
        body = dict(body)
        named = body.pop("model", model)
        if named != model:
            raise InputError(f"{where}: body.model {named!r} differs from --model {model!r}")
        items.append(InputItem(custom_id, _spec(where, model, body, lane, _URL_KINDS[url])))
    if not items:
        raise InputError(f"{path}: no requests in the file")
    return items


def _spec(where: str, model: str, value: Any, lane: Lane, kind: str | None = None) -> JobCreate:
    try:
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "model" or v == model}
        return to_spec(model, value, kind=kind, lane=lane)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{where}: {loc + ': ' if loc else ''}{message}") from exc
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from exc
