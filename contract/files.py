"""Files, as OpenAI's Files API describes them (purpose `batch` for batch input)."""

from __future__ import annotations

from typing import Literal

from ._base import Out

__all__ = ["FileDeleted", "FileList", "FileObject"]


class FileObject(Out):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int  # unix seconds, as OpenAI gives it
    expires_at: int | None = None
    filename: str
    purpose: str  # "batch" for uploads; "batch_output" for what a batch writes
    status: str = "processed"


class FileDeleted(Out):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class FileList(Out):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool = False
