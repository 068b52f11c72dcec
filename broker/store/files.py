"""Files in Redis: batch input uploaded by users and the output a batch writes.

A file is a hash of its description and a string of its text (JSONL, UTF-8), both expiring
after the retention time, as jobs do. Redis strings hold up to 512 MB; the API caps a
batch input file at 200 MB, as OpenAI does.
"""

from __future__ import annotations

from typing import Any

from garage.contract import FileObject

from ..clock import Clock
from ..ids import new_id
from . import keys

__all__ = ["FileStore"]


class FileStore:
    def __init__(self, redis: Any, clock: Clock, *, retention_ms: int) -> None:
        self._redis = redis
        self._clock = clock
        self._retention_ms = retention_ms

    async def create(self, owner: str, filename: str, purpose: str, text: str) -> FileObject:
        now_ms = self._clock()
        file_id = "file-" + new_id("f", now_ms).removeprefix("f_")
        size = len(text.encode())
        description = FileObject(
            id=file_id,
            bytes=size,
            created_at=now_ms // 1000,
            expires_at=(now_ms + self._retention_ms) // 1000,
            filename=filename,
            purpose=purpose,
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.file_content(file_id), text, px=self._retention_ms)
            pipe.set(
                keys.file(file_id),
                f"{owner}\n{description.model_dump_json()}",
                px=self._retention_ms,
            )
            pipe.zadd(keys.owner_files(owner), {file_id: now_ms})
            await pipe.execute()
        return description

    async def get(self, file_id: str) -> tuple[str, FileObject] | None:
        """The file's owner and description."""
        stored = await self._redis.get(keys.file(file_id))
        if stored is None:
            return None
        owner, _, description = stored.partition("\n")
        return owner, FileObject.model_validate_json(description)

    async def text(self, file_id: str) -> str | None:
        return await self._redis.get(keys.file_content(file_id))

    async def delete(self, owner: str, file_id: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.file(file_id), keys.file_content(file_id))
            pipe.zrem(keys.owner_files(owner), file_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def list(self, owner: str, *, limit: int = 100) -> list[FileObject]:
        ids = await self._redis.zrevrange(keys.owner_files(owner), 0, limit - 1)
        found = []
        for file_id in ids:
            entry = await self.get(file_id)
            if entry is None:
                await self._redis.zrem(keys.owner_files(owner), file_id)
            else:
                found.append(entry[1])
        return found
