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

from garage.client import to_spec
from garage.contract import JobCreate, Lane
from garage.contract.batch_file import BatchLineError, parse_batch_jsonl, to_job

__all__ = ["InputError", "InputItem", "read_input"]


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
    return items


def _read_array(path: Path, text: str, model: str, lane: Lane) -> list[InputItem]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}"
        ) from exc
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
    try:
        lines = parse_batch_jsonl(text)
        return [
            InputItem(line.custom_id, to_job(line, model).model_copy(update={"lane": lane}))
            for line in lines
        ]
    except BatchLineError as exc:
        where = f"{path} line {exc.line}" if exc.line else str(path)
        raise InputError(f"{where}: {exc.message}") from exc


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
