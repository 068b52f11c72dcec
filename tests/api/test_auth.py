"""Keys and roles: hashed storage, role checks, and jobs invisible to other owners."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from .conftest import ADMIN, CHAT, bearer, new_key


async def test_missing_and_wrong_keys_get_401(http: httpx.AsyncClient, broker) -> None:
    for headers in ({}, bearer("nope"), {"Authorization": "Basic abc"}):
        reply = await http.get("/v1/jobs", headers=headers)
        assert reply.status_code == 401
        assert reply.json()["error"]["type"] == "authentication_error"


async def test_keys_are_stored_hashed(http: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    created = (
        await http.post("/v1/admin/keys", json={"role": "user", "name": "bob"}, headers=ADMIN)
    ).json()
    secret = created["key"]
    assert created["role"] == "user" and created["id"].startswith("key_")
    for key in await redis.keys("*"):
        dump = str(await redis.dump(key))
        assert secret not in key and secret not in dump
    assert (await http.get("/v1/jobs", headers=bearer(secret))).status_code == 200


async def test_roles(http: httpx.AsyncClient, user, worker) -> None:
    assert (await http.post("/v1/jobs", json=CHAT, headers=worker)).status_code == 403
    assert (
        await http.post("/v1/admin/keys", json={"role": "admin", "name": "x"}, headers=user)
    ).status_code == 403
    poll = {"worker_id": "w", "models": ["m"], "slots_free": 1, "wait_s": 0}
    assert (await http.post("/v1/worker/poll", json=poll, headers=user)).status_code == 403
    assert (await http.post("/v1/worker/poll", json=poll, headers=worker)).status_code == 200


async def test_a_users_jobs_are_404_to_everyone_else(http: httpx.AsyncClient, user) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    mallory = await new_key(http, "user", "mallory")
    for method, path in (
        ("GET", f"/v1/jobs/{job['id']}"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
    ):
        reply = await http.request(method, path, headers=mallory)
        assert reply.status_code == 404, (method, path)
    assert (await http.get("/v1/jobs", headers=mallory)).json()["data"] == []
    assert (await http.get(f"/v1/jobs/{job['id']}", headers=user)).json()["status"] == "queued"
    assert (await http.get(f"/v1/jobs/{job['id']}", headers=ADMIN)).status_code == 200


async def test_revoked_key_stops_working(http: httpx.AsyncClient) -> None:
    created = (
        await http.post("/v1/admin/keys", json={"role": "user", "name": "tmp"}, headers=ADMIN)
    ).json()
    listed = (await http.get("/v1/admin/keys", headers=ADMIN)).json()
    assert created["id"] in [k["id"] for k in listed] and "key" not in listed[0]
    assert (await http.delete(f"/v1/admin/keys/{created['id']}", headers=ADMIN)).status_code == 204
    assert (await http.get("/v1/jobs", headers=bearer(created["key"]))).status_code == 401
    assert (await http.delete(f"/v1/admin/keys/{created['id']}", headers=ADMIN)).status_code == 404
