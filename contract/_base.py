"""Base models for everything on the wire.

Strict in, tolerant out: payloads a caller sends (`In`) forbid unknown fields so a typo is
a clear 400, while objects the server returns (`Out`) ignore unknown fields so an older
client keeps working against a newer broker. OpenAI's request bodies (`Open`) are inbound
too but keep unknown fields, which garage passes on to the backend.

Everything inbound holds only what JSON can carry back out: no NaN or Infinity (Python's
and pydantic's JSON parsers accept both, and 1e400 overflows to Infinity), which would be
stored and served back as null, and no nesting past MAX_JSON_DEPTH, which the broker's JSON
parser could not read back when the job is served.
"""

from __future__ import annotations

import math
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["MAX_JSON_DEPTH", "In", "Open", "Out"]

MAX_JSON_DEPTH = 100


class _Inbound(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="after")
    def _json_only(self) -> Self:
        _check_json(_fields(self))
        return self


class In(_Inbound):
    model_config = ConfigDict(extra="forbid")


class Open(_Inbound):
    model_config = ConfigDict(extra="allow")


class Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _fields(model: BaseModel) -> dict[str, Any]:
    return {**model.__dict__, **(model.__pydantic_extra__ or {})}


def _check_json(fields: dict[str, Any]) -> None:
    """Raises ValueError naming the first number JSON has no form for, or the first
    container nested too deeply. Iterative, so no input can exhaust Python's stack.

    Every inbound body passes here, so the common case (nothing wrong) is a walk that
    keeps only depths; the path to a problem is traced only once there is one."""
    if _json_clean(fields):
        return
    stack: list[tuple[Any, tuple[Any, ...]]] = [(fields, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            where = _dotted(path[:2])  # the field, not a hundred list indexes
            raise ValueError(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise ValueError(f"{_dotted((*path, key))}: {_not_json(value)}")
            elif isinstance(value, dict | list | tuple):
                stack.append((value, (*path, key)))
            elif isinstance(value, BaseModel):
                stack.append((_fields(value), (*path, key)))


def _json_clean(fields: dict[str, Any]) -> bool:
    stack: list[tuple[Any, int]] = [(fields, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        for value in node.values() if isinstance(node, dict) else node:
            if value.__class__ is float:
                if not math.isfinite(value):
                    return False
            elif isinstance(value, dict | list | tuple):
                stack.append((value, depth + 1))
            elif isinstance(value, BaseModel):
                stack.append((_fields(value), depth + 1))
    return True


def _not_json(value: float) -> str:
    if math.isnan(value):
        return "NaN is not a JSON number"
    sign = "-" if value < 0 else ""
    return f"{sign}Infinity is not a JSON number (nor is a number past {sign}1.8e308)"


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(map(str, path))
