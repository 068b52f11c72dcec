"""API keys: roles and the key-management payloads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from ._base import In, Out
from .jobs import MAX_MODEL_NAME
from .workers import MAX_POLL_MODELS

_ModelName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MODEL_NAME)]

__all__ = ["KeyCreate", "KeyCreated", "KeyInfo", "KeyLimits", "KeyLimitsUpdate", "Role"]


class Role(StrEnum):
    user = "user"  # submits jobs, sees only its own
    worker = "worker"  # polls for work, reports only on leases it holds
    admin = "admin"  # everything: keys, the fleet, every job


class KeyCreate(In):
    role: Role
    name: str = Field(min_length=1, max_length=128)
    owner: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A worker key only: the id of the user key that owns the rig, credited "
        "with what the key's workers contribute (docs/accounting.md).",
    )


class KeyLimits(Out):
    """A key's own limits. None: the broker's default for keys; 0: no limit."""

    requests_per_minute: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="Job submits a minute (a batch is one), as a steady rate with a minute's "
        "burst: a key that sent nothing for a minute may send this many at once.",
    )
    max_active_jobs: int | None = Field(
        None,
        ge=0,
        le=10_000_000,
        description="Jobs the key may have queued or running at once (a batch's jobs count).",
    )
    models: list[_ModelName] | None = Field(
        None,
        max_length=MAX_POLL_MODELS,
        description="A worker key's: the only models its workers may serve (a poll naming "
        "others is served for these alone); None: any.",
    )


class KeyLimitsUpdate(In, KeyLimits):
    """`PUT /v1/admin/keys/{key_id}/limits`: the key's limits, all of them (a field left
    out goes back to the broker's default)."""

    model_config = In.model_config


class KeyInfo(Out):
    id: str
    role: Role
    name: str
    created_at: datetime | None = None
    owner: str | None = Field(None, description="A worker key's owner: a user key id.")
    limits: KeyLimits = Field(default_factory=KeyLimits, description="The key's own limits.")


class KeyCreated(KeyInfo):
    key: str = Field(description="The secret; shown once, stored only as a hash.")
