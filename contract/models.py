"""`GET /v1/models`: the models live workers serve, in OpenAI's list format."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Out

__all__ = ["ModelCard", "ModelList"]


class ModelCard(Out):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "garage"
    workers: int = Field(0, description="Live workers serving the model now.")


class ModelList(Out):
    object: Literal["list"] = "list"
    data: list[ModelCard]
