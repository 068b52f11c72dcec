"""Bad input gets a 4xx with a clear OpenAI-style JSON error, never a 500, and changes nothing."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis

from .conftest import CHAT, poll_body

JSON = {"Content-Type": "application/json"}

BAD_SUBMITS = [
    ('{"model": "m"', 400, "not valid JSON"),
    ("[1, 2]", 400, "JSON object"),
    ('{"model": "m"}', 400, "request"),
    ('{"model": 5, "request": {"messages": []}}', 400, "model"),
    ('{"model": "m", "request": {"messages": []}, "lane": "fast"}', 400, "lane"),
    ('{"model": "m", "request": {"messages": []}, "max_attempts": 0}', 400, "max_attempts"),
    ('{"model": "m", "request": {"messages": []}, "surprise": 1}', 400, "surprise"),
    ('{"model": "m", "kind": "chat", "request": {"prompt": "x"}}', 400, "messages"),
    ('{"model": "m", "request": {"messages": [], "model": "other"}}', 400, "differs"),
    ('{"model": "", "request": {"messages": []}}', 400, "model"),
]


async def snapshot(redis: aioredis.Redis) -> dict[str, str]:
    return {key: str(await redis.dump(key)) for key in sorted(await redis.keys("*"))}


@pytest.mark.parametrize(("body", "status", "mentions"), BAD_SUBMITS)
async def test_bad_submits(
    http: httpx.AsyncClient, user, redis: aioredis.Redis, body: str, status: int, mentions: str
) -> None:
    before = await snapshot(redis)
    reply = await http.post("/v1/jobs", content=body, headers={**user, **JSON})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert mentions in error["message"] and error["type"] == "invalid_request_error"
    assert await snapshot(redis) == before


async def test_oversize_body_is_413(http: httpx.AsyncClient, user, redis) -> None:
    before = await snapshot(redis)
    big = {**CHAT, "request": {"messages": [{"role": "user", "content": "x" * 100_000}]}}
    reply = await http.post("/v1/jobs", json=big, headers=user)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "payload_too_large"

    async def chunks():  # no Content-Length: the limit applies while streaming too
        for _ in range(20):
            yield b"x" * 8192

    reply = await http.post("/v1/jobs", content=chunks(), headers={**user, **JSON})
    assert reply.status_code == 413
    assert await snapshot(redis) == before


async def test_unknown_ids_are_404(http: httpx.AsyncClient, user, worker) -> None:
    for method, path in (
        ("GET", "/v1/jobs/job_nope"),
        ("POST", "/v1/jobs/job_nope/cancel"),
        ("GET", "/v1/jobs/job_nope/events"),
        ("GET", "/v1/nothing-here"),
    ):
        reply = await http.request(method, path, headers=user)
        assert reply.status_code == 404 and "error" in reply.json()
    reply = await http.post(
        "/v1/worker/jobs/job_nope/report", json={"lease_token": "t"}, headers=worker
    )
    assert reply.status_code == 404
    reply = await http.delete("/v1/jobs", headers=user)  # a path that takes GET and POST
    assert reply.status_code == 405 and reply.headers["allow"] == "POST, GET"
    assert reply.json()["error"]["code"] == "method_not_allowed"


async def test_bad_worker_bodies(http: httpx.AsyncClient, worker) -> None:
    cases = [
        {**poll_body(), "slots_free": -1},
        {**poll_body(), "worker_id": "has space"},
        {**poll_body(), "wait_s": 600},
        {**poll_body(slots=3), "slots_total": 2},
        {"models": ["m"]},
    ]
    for body in cases:
        reply = await http.post("/v1/worker/poll", json=body, headers=worker)
        assert reply.status_code == 400, body
    reply = await http.post(
        "/v1/worker/jobs/job_x/complete", json={"lease_token": "t"}, headers=worker
    )
    assert reply.status_code == 400 and "result" in reply.json()["error"]["message"]


async def test_bad_query_and_headers(http: httpx.AsyncClient, user) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    reply = await http.get(
        f"/v1/jobs/{job['id']}/events", headers={**user, "Last-Event-ID": "garbage"}
    )
    assert reply.status_code == 400
    assert (await http.get("/v1/jobs?limit=0", headers=user)).status_code == 400
    assert (await http.get("/v1/jobs?status=weird", headers=user)).status_code == 400
    assert (await http.get(f"/v1/jobs/{job['id']}?wait_s=-1", headers=user)).status_code == 400
    assert (await http.get("/v1/jobs/bad%20id", headers=user)).status_code == 400


async def test_bytes_that_are_not_utf8_are_400(http: httpx.AsyncClient, user, redis) -> None:
    before = await snapshot(redis)
    body = b'{"model": "m\xff\xfe", "request": {"messages": []}}'
    for path in ("/v1/jobs", "/v1/chat/completions", "/v1/batches"):
        reply = await http.post(path, content=body, headers={**user, **JSON})
        assert reply.status_code == 400, path
        assert "not valid JSON" in reply.json()["error"]["message"]
    upload = await http.post(
        "/v1/files",
        files={"file": ("in.jsonl", b'{"custom_id": "\xff"}\n')},
        data={"purpose": "batch"},
        headers=user,
    )
    assert upload.status_code == 400 and "not UTF-8" in upload.json()["error"]["message"]
    assert await snapshot(redis) == before
