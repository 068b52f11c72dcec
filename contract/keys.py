"""API keys: roles and the key-management payloads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from ._base import In, Out

__all__ = ["KeyCreate", "KeyCreated", "KeyInfo", "Role"]


class Role(StrEnum):
    user = "user"  # submits jobs, sees only its own
    worker = "worker"  # polls for work, reports only on leases it holds
    admin = "admin"  # everything: keys, the fleet, every job


class KeyCreate(In):
    role: Role
    name: str = Field(min_length=1, max_length=128)


class KeyInfo(Out):
    id: str
    role: Role
    name: str
    created_at: datetime | None = None


class KeyCreated(KeyInfo):
    key: str = Field(description="The secret; shown once, stored only as a hash.")
