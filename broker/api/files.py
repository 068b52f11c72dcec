"""OpenAI's Files API, for batch input: upload, describe, download, delete, list."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.responses import Response

from garage.contract import (
    MAX_BATCH_FILE_BYTES,
    FileDeleted,
    FileList,
    FileObject,
    Role,
)

from ..errors import BadRequest, NotFound
from ..routing import Call, Endpoint, json_response

__all__ = ["endpoints"]

_UPLOAD_FORM = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "JSONL, one request a line."},
        "purpose": {"type": "string", "enum": ["batch"]},
    },
}


async def _own_file(call: Call[None, None]) -> FileObject:
    """The caller's file (any file for an admin); everyone else's is 404."""
    file_id = call.path["file_id"]
    found = await call.broker.store.files.get(file_id)
    if found is None or not call.caller.can_see(found[0]):
        raise NotFound(f"no file {file_id!r}", param="file_id")
    return found[1]


async def upload_file(call: Call[None, None]) -> Response:
    """Uploads a batch input file (purpose `batch`, JSONL, at most 200 MB)."""
    call.broker.jobs.check_room()  # a file is the start of a batch: none while full
    form = await call.request.form()
    try:
        purpose, file = form.get("purpose"), form.get("file")
        if purpose != "batch":
            raise BadRequest(f"purpose {purpose!r} is not supported; use 'batch'", param="purpose")
        if not isinstance(file, UploadFile):
            raise BadRequest("the form needs a 'file' part with the JSONL", param="file")
        try:
            text = (await file.read()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"the file is not UTF-8 text: {exc}", param="file") from exc
        stored = await call.broker.store.files.create(
            call.caller.id, file.filename or "upload.jsonl", purpose, text
        )
    finally:
        await form.close()
    return json_response(stored)


async def list_files(call: Call[None, None]) -> Response:
    return json_response(FileList(data=await call.broker.store.files.list(call.caller.id)))


async def get_file(call: Call[None, None]) -> Response:
    return json_response(await _own_file(call))


async def file_content(call: Call[None, None]) -> Response:
    """The file as it was uploaded or written (JSONL)."""
    described = await _own_file(call)
    text = await call.broker.store.files.text(described.id)
    if text is None:
        raise NotFound(f"no file {described.id!r}", param="file_id")
    return Response(text, media_type="application/octet-stream")


async def delete_file(call: Call[None, None]) -> Response:
    described = await _own_file(call)
    found = await call.broker.store.files.get(described.id)
    owner = found[0] if found else call.caller.id
    deleted = await call.broker.store.files.delete(owner, described.id)
    return json_response(FileDeleted(id=described.id, deleted=deleted))


_TAGS = ("files",)
endpoints = [
    Endpoint("POST", "/v1/files", upload_file, "Upload a batch input file", _TAGS, Role.user,
             reply=FileObject, form=_UPLOAD_FORM,
             # the file may be far larger than any request (plus the multipart framing)
             max_body_bytes=MAX_BATCH_FILE_BYTES + 1024 * 1024),
    Endpoint("GET", "/v1/files", list_files, "List your files", _TAGS, Role.user,
             reply=FileList),
    Endpoint("GET", "/v1/files/{file_id}", get_file, "Describe a file", _TAGS, Role.user,
             reply=FileObject),
    Endpoint("GET", "/v1/files/{file_id}/content", file_content, "Download a file", _TAGS,
             Role.user, media_type="application/octet-stream"),
    Endpoint("DELETE", "/v1/files/{file_id}", delete_file, "Delete a file", _TAGS, Role.user,
             reply=FileDeleted),
]  # fmt: skip
