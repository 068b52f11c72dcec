"""Key management for admins: create, list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from garage.contract import KeyCreate, KeyCreated, KeyInfo, Role

from ..deps import BrokerDep, Caller
from ..errors import NotFound

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, broker: BrokerDep, caller: Caller) -> KeyCreated:
    """Creates a key; the secret is in this response only."""
    caller.require(Role.admin)
    return await broker.store.apikeys.create(body.role, body.name)


@router.get("/keys", response_model=list[KeyInfo])
async def list_keys(broker: BrokerDep, caller: Caller) -> list[KeyInfo]:
    caller.require(Role.admin)
    return await broker.store.apikeys.list()


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(
    key_id: Annotated[str, Path(max_length=64)], broker: BrokerDep, caller: Caller
) -> None:
    caller.require(Role.admin)
    if not await broker.store.apikeys.revoke(key_id):
        raise NotFound(f"no key {key_id!r}", param="key_id")
    broker.auth.forget(key_id)
