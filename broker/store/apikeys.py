"""API keys in Redis, stored only as SHA-256 hashes of the secret.

Secrets are 256-bit random strings, so a fast unsalted hash is as safe as a slow one here
(there is nothing to brute-force), and it keeps authentication to one Redis lookup.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from redis.exceptions import WatchError

from garage.contract import KeyCreated, KeyInfo, KeyLimits, Role

from ..clock import Clock, from_ms
from ..ids import new_id, new_secret
from . import keys

__all__ = ["ApiKeyStore", "hash_secret"]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, redis: Any, clock: Clock) -> None:
        self._redis = redis
        self._clock = clock

    async def create(self, role: Role, name: str, *, owner: str | None = None) -> KeyCreated:
        """A new key; `owner` (a worker key's: a user key id) is stored with it, and
        contribute in lib.lua reads it from there."""
        now_ms = self._clock()
        key_id = new_id("key", now_ms)
        secret = new_secret(f"gk-{role.value[0]}")
        digest = hash_secret(secret)
        record: dict[str, str | int] = {
            "id": key_id, "role": role.value, "name": name, "created_ms": now_ms,
        }  # fmt: skip
        if owner is not None:
            record["owner"] = owner
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.api_key(digest), mapping=record)
            pipe.hset(keys.api_key_ids(), key_id, digest)
            await pipe.execute()
        return KeyCreated(
            id=key_id, role=role, name=name, created_at=from_ms(now_ms), owner=owner, key=secret
        )

    async def get(self, key_id: str) -> KeyInfo | None:
        """The key with this id, or None."""
        digest = await self._redis.hget(keys.api_key_ids(), key_id)
        fields = await self._redis.hgetall(keys.api_key(digest)) if digest else None
        return _info(fields) if fields else None

    async def lookup(self, secret: str) -> KeyInfo | None:
        fields = await self._redis.hgetall(keys.api_key(hash_secret(secret)))
        return _info(fields) if fields else None

    async def list(self) -> list[KeyInfo]:
        digests = await self._redis.hvals(keys.api_key_ids())
        if not digests:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hgetall(keys.api_key(digest))
            rows = await pipe.execute()
        return sorted((_info(row) for row in rows if row), key=lambda k: k.id)

    async def set_limits(self, key_id: str, limits: KeyLimits) -> KeyInfo | None:
        """Sets the key's own limits (None: the broker's default); every broker drops the
        key from its cache at once, so the new limits hold from the next request."""
        digest = await self._redis.hget(keys.api_key_ids(), key_id)
        if digest is None:
            return None
        async with self._redis.pipeline(transaction=True) as pipe:
            for field, value in _limit_fields(limits).items():
                if value is None:
                    pipe.hdel(keys.api_key(digest), field)
                else:
                    pipe.hset(keys.api_key(digest), field, value)
            pipe.hgetall(keys.api_key(digest))
            pipe.publish(keys.REVOKED_CHANNEL, key_id)  # "this key changed": drop it
            replies = await pipe.execute()
        fields = replies[-2]
        return _info(fields) if fields else None

    async def rotate(self, key_id: str) -> KeyCreated | None:
        """A new secret for the key: the same id (so its jobs, usage, contribution and
        limits stay its own), the old secret refused from now on, on every broker."""
        secret = None
        while secret is None:  # the record read and replaced as one, or read again
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(keys.api_key_ids())
                digest = await pipe.hget(keys.api_key_ids(), key_id)
                if digest is None:
                    return None
                record = await pipe.hgetall(keys.api_key(digest))
                role = Role(record["role"])
                new = new_secret(f"gk-{role.value[0]}")
                pipe.multi()
                pipe.hset(keys.api_key(hash_secret(new)), mapping=record)
                pipe.delete(keys.api_key(digest))
                pipe.hset(keys.api_key_ids(), key_id, hash_secret(new))
                pipe.publish(keys.REVOKED_CHANNEL, key_id)  # the old secret, everywhere
                try:
                    await pipe.execute()
                    secret = new
                except WatchError:
                    continue
        info = _info(record)
        return KeyCreated(**info.model_dump(), key=secret)

    async def revoke(self, key_id: str) -> bool:
        digest = await self._redis.hget(keys.api_key_ids(), key_id)
        if digest is None:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.api_key(digest))
            pipe.hdel(keys.api_key_ids(), key_id)
            pipe.publish(keys.REVOKED_CHANNEL, key_id)  # every broker drops it from its cache
            await pipe.execute()
        return True


_LIMIT_FIELDS = {"requests_per_minute": "rpm", "max_active_jobs": "max_active"}


def _limit_fields(limits: KeyLimits) -> dict[str, int | str | None]:
    fields: dict[str, int | str | None] = {
        field: getattr(limits, name) for name, field in _LIMIT_FIELDS.items()
    }
    fields["models"] = None if limits.models is None else json.dumps(limits.models)
    return fields


def _info(fields: dict[str, str]) -> KeyInfo:
    limits: dict[str, Any] = {
        name: int(fields[f]) for name, f in _LIMIT_FIELDS.items() if fields.get(f)
    }
    if fields.get("models"):
        limits["models"] = json.loads(fields["models"])
    return KeyInfo(
        id=fields["id"],
        role=Role(fields["role"]),
        name=fields["name"],
        created_at=from_ms(fields.get("created_ms")),
        owner=fields.get("owner") or None,
        limits=KeyLimits(**limits),
    )
