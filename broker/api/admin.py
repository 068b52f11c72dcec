"""Key management for admins: create, list, rotate, revoke, and set a key's limits."""

from __future__ import annotations

from pydantic import TypeAdapter
from starlette.responses import Response

from garage.contract import KeyCreate, KeyCreated, KeyInfo, KeyLimits, KeyLimitsUpdate, Role

from ..errors import BadRequest, NotFound
from ..routing import Call, Endpoint, json_response

__all__ = ["endpoints"]

_KEY_LIST = TypeAdapter(list[KeyInfo])


async def create_key(call: Call[KeyCreate, None]) -> Response:
    """Creates a key; the secret is in this response only. A worker key may name its
    `owner`, a user key, credited with what the key's workers contribute."""
    body = call.body
    if body.owner is not None:
        if body.role is not Role.worker:
            raise BadRequest("only a worker key has an owner", param="owner")
        owner = await call.broker.store.apikeys.get(body.owner)
        if owner is None or owner.role is not Role.user:
            raise BadRequest(f"no user key {body.owner!r} to own the key", param="owner")
    created = await call.broker.store.apikeys.create(body.role, body.name, owner=body.owner)
    return json_response(created, status_code=201)


async def list_keys(call: Call[None, None]) -> Response:
    keys = await call.broker.store.apikeys.list()
    return Response(_KEY_LIST.dump_json(keys), media_type="application/json")


async def revoke_key(call: Call[None, None]) -> Response:
    key_id = call.path["key_id"]
    if not await call.broker.store.apikeys.revoke(key_id):
        raise NotFound(f"no key {key_id!r}", param="key_id")
    call.broker.auth.forget(key_id)  # here at once; other brokers hear it on pub/sub
    return Response(status_code=204)


async def rotate_key(call: Call[None, None]) -> Response:
    """A new secret for the key, in this response only; the old one is refused from now
    on. The id stays, so the key's jobs, usage, contribution and limits stay its own."""
    key_id = call.path["key_id"]
    rotated = await call.broker.store.apikeys.rotate(key_id)
    if rotated is None:
        raise NotFound(f"no key {key_id!r}", param="key_id")
    call.broker.auth.forget(key_id)  # here at once; other brokers hear it on pub/sub
    return json_response(rotated)


async def set_limits(call: Call[KeyLimitsUpdate, None]) -> Response:
    """Sets the key's own limits; a field left out (or null) takes the broker's default.
    Every broker applies them from the key's next request."""
    key_id = call.path["key_id"]
    limits = KeyLimits(**call.body.model_dump())
    updated = await call.broker.store.apikeys.set_limits(key_id, limits)
    if updated is None:
        raise NotFound(f"no key {key_id!r}", param="key_id")
    call.broker.auth.forget(key_id)  # here at once; other brokers hear it on pub/sub
    return json_response(updated)


_TAGS = ("admin",)
endpoints = [
    Endpoint("POST", "/v1/admin/keys", create_key, "Create a key", _TAGS, Role.admin,
             body=KeyCreate, reply=KeyCreated, status_code=201),
    Endpoint("GET", "/v1/admin/keys", list_keys, "List keys", _TAGS, Role.admin),
    Endpoint("DELETE", "/v1/admin/keys/{key_id}", revoke_key, "Revoke a key", _TAGS, Role.admin,
             status_code=204),
    Endpoint("POST", "/v1/admin/keys/{key_id}/rotate", rotate_key, "Rotate a key's secret",
             _TAGS, Role.admin, reply=KeyCreated),
    Endpoint("PUT", "/v1/admin/keys/{key_id}/limits", set_limits, "Set a key's limits", _TAGS,
             Role.admin, body=KeyLimitsUpdate, reply=KeyInfo),
]  # fmt: skip
