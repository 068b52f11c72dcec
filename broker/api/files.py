"""OpenAI's Files API, for batch input: upload, describe, download, delete, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, UploadFile
from fastapi.responses import Response

from garage.contract import (
    MAX_BATCH_FILE_BYTES,
    FileDeleted,
    FileList,
    FileObject,
    Role,
)

from ..auth import Principal
from ..deps import Broker, BrokerDep, Caller
from ..errors import BadRequest, NotFound, PayloadTooLarge
from ..responses import model_response

__all__ = ["router"]

router = APIRouter(prefix="/v1/files", tags=["files"])

FileId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


async def own_file(broker: Broker, caller: Principal, file_id: str) -> FileObject:
    """The caller's file (any file for an admin); everyone else's is 404."""
    caller.require(Role.user)
    found = await broker.store.files.get(file_id)
    if found is None or not caller.can_see(found[0]):
        raise NotFound(f"no file {file_id!r}", param="file_id")
    return found[1]


@router.post("", response_model=FileObject)
async def upload_file(
    broker: BrokerDep,
    caller: Caller,
    file: Annotated[UploadFile, File(description="JSONL, one request per line.")],
    purpose: Annotated[str, Form()],
) -> Response:
    """Uploads a batch input file (purpose `batch`, JSONL, at most 200 MB)."""
    caller.require(Role.user)
    if purpose != "batch":
        raise BadRequest(f"purpose {purpose!r} is not supported; use 'batch'", param="purpose")
    data = await file.read(MAX_BATCH_FILE_BYTES + 1)
    if len(data) > MAX_BATCH_FILE_BYTES:
        raise PayloadTooLarge(f"a batch file holds at most {MAX_BATCH_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the file is not UTF-8 text: {exc}", param="file") from exc
    stored = await broker.store.files.create(
        caller.id, file.filename or "upload.jsonl", purpose, text
    )
    return model_response(stored)


@router.get("", response_model=FileList)
async def list_files(broker: BrokerDep, caller: Caller) -> Response:
    caller.require(Role.user)
    return model_response(FileList(data=await broker.store.files.list(caller.id)))


@router.get("/{file_id}", response_model=FileObject)
async def get_file(file_id: FileId, broker: BrokerDep, caller: Caller) -> Response:
    return model_response(await own_file(broker, caller, file_id))


@router.get("/{file_id}/content", response_class=Response)
async def file_content(file_id: FileId, broker: BrokerDep, caller: Caller) -> Response:
    """The file as it was uploaded or written (JSONL)."""
    await own_file(broker, caller, file_id)
    text = await broker.store.files.text(file_id)
    if text is None:
        raise NotFound(f"no file {file_id!r}", param="file_id")
    return Response(text, media_type="application/octet-stream")


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: FileId, broker: BrokerDep, caller: Caller) -> Response:
    await own_file(broker, caller, file_id)
    found = await broker.store.files.get(file_id)
    owner = found[0] if found else caller.id
    deleted = await broker.store.files.delete(owner, file_id)
    return model_response(FileDeleted(id=file_id, deleted=deleted))
