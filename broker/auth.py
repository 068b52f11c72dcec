"""Who is calling: bearer keys resolved to a principal with a role.

Keys are looked up by the SHA-256 of the secret and cached in memory for a few seconds,
so authentication costs no Redis round trip on a hot path (polls, stream reports). The
bootstrap admin key from `GARAGE_ADMIN_KEY` is compared in constant time and never stored.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from garage.contract import KeyLimits, Role

from .errors import Forbidden, Unauthorized
from .store.apikeys import ApiKeyStore, hash_secret

__all__ = ["Authenticator", "Principal"]

_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    id: str  # the key id; a user's jobs are owned by it
    role: Role
    name: str
    limits: KeyLimits = field(default_factory=KeyLimits)  # None fields: the broker's defaults

    def require(self, *roles: Role) -> None:
        if self.role is not Role.admin and self.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"this needs a {allowed} key; this key's role is {self.role.value}")

    def can_see(self, owner: str) -> bool:
        return self.role is Role.admin or owner == self.id


BOOTSTRAP_ADMIN = Principal(id="admin", role=Role.admin, name="bootstrap admin")


class Authenticator:
    def __init__(self, keys: ApiKeyStore, *, admin_key: str | None, cache_s: float) -> None:
        self._keys = keys
        self._admin_key = admin_key.encode() if admin_key else None
        self._cache_s = cache_s
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        if self._admin_key is not None and hmac.compare_digest(secret.encode(), self._admin_key):
            return BOOTSTRAP_ADMIN
        digest = hash_secret(secret)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        info = await self._keys.lookup(secret)
        if info is None:
            self._cache.pop(digest, None)
            raise Unauthorized("invalid API key")
        principal = Principal(id=info.id, role=info.role, name=info.name, limits=info.limits)
        if self._cache_s > 0:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (principal, now + self._cache_s)
        return principal

    def forget(self, key_id: str | None) -> None:
        """Drops a revoked (or changed) key from this process's cache at once; None: every
        key (a change may have been missed)."""
        if key_id is None:
            self._cache.clear()
        else:
            self._cache = {d: entry for d, entry in self._cache.items() if entry[0].id != key_id}
