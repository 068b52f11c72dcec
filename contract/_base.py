"""Base models for everything on the wire.

Strict in, tolerant out: payloads a caller sends (`_In`) forbid unknown fields so a typo is
a clear 400, while objects the server returns (`_Out`) ignore unknown fields so an older
client keeps working against a newer broker.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["In", "Out"]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(extra="ignore")
