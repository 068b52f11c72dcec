"""Inputs past what JSON or the contract allows are a 400 naming the problem, never a 500
and never stored: huge numbers, deep nesting, NaN and Infinity, oversized names and lists.

The test broker refuses bodies over 64 KiB, so the oversized strings here are just past
each bound rather than a megabyte long; the bound is what refuses them.
"""

from __future__ import annotations

import json

import httpx
import pytest
import redis.asyncio as aioredis

from .conftest import CHAT, poll_body
from .test_bad_input import snapshot
from .test_workers import lease_one

JSON = {"Content-Type": "application/json"}
MESSAGES = '[{"role": "user", "content": "hi"}]'
HUGE_NUMBER = "1" * 5000  # past Python's 4300-digit limit for int <-> str
# Within the test broker's 64 KiB body limit (a batch file has no such limit).
DEEP_BODY = "[" * 30_000 + "]" * 30_000
DEEP_LINE = "[" * 100_000 + "]" * 100_000
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400"]


def chat_line(custom_id: str, extra: str = "") -> str:
    """A batch input line as text, so `extra` can be JSON that json.dumps never writes."""
    more = f', "x": {extra}' if extra else ""
    return (
        f'{{"custom_id": "{custom_id}", "method": "POST", "url": "/v1/chat/completions", '
        f'"body": {{"model": "m", "messages": {MESSAGES}{more}}}}}'
    )


async def create_batch(http: httpx.AsyncClient, user, lines: list[str]) -> httpx.Response:
    content = "\n".join(lines).encode()
    uploaded = await http.post(
        "/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"}, headers=user
    )
    assert uploaded.status_code == 200, uploaded.text
    return await http.post(
        "/v1/batches",
        json={"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions"},
        headers=user,
    )


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (HUGE_NUMBER, "line 2: not valid JSON: a number has too many digits"),
        (DEEP_LINE, "line 2: not valid JSON: nested too deeply"),
        ("[" * 300 + "]" * 300, "line 2: request.x: nested more than 100 levels deep"),
        ("NaN", "line 2: not valid JSON: NaN is not a JSON number"),
        ("-Infinity", "line 2: not valid JSON: -Infinity is not a JSON number"),
        ("[1e400]", "line 2: request.x.0: Infinity is not a JSON number"),
    ],
)
async def test_a_batch_line_json_cannot_hold_is_named(
    http: httpx.AsyncClient, user, redis: aioredis.Redis, extra: str, says: str
) -> None:
    reply = await create_batch(http, user, [chat_line("a"), chat_line("b", extra)])
    assert reply.status_code == 400, reply.text[:300]
    error = reply.json()["error"]
    assert error["code"] == "invalid_batch_line" and says in error["message"], error
    assert (await http.get("/v1/batches", headers=user)).json()["data"] == []


async def test_a_batch_custom_id_longer_than_a_metadata_value_is_named(
    http: httpx.AsyncClient, user
) -> None:
    fits = await create_batch(http, user, [chat_line("a" * 512)])
    assert fits.status_code == 200, fits.text
    reply = await create_batch(http, user, [chat_line("a"), chat_line("b" * 513)])
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_batch_line" and error["param"] == "custom_id"
    assert "line 2: 'custom_id' is longer than 512 characters" in error["message"]


@pytest.mark.parametrize("value", [HUGE_NUMBER, DEEP_BODY])
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/chat/completions"])
async def test_json_a_body_cannot_hold_is_400(
    http: httpx.AsyncClient, user, redis: aioredis.Redis, path: str, value: str
) -> None:
    before = await snapshot(redis)
    fields = f'"messages": {MESSAGES}, "x": {value}'
    body = (
        f'{{"model": "m", "wait_for_worker": true, "request": {{{fields}}}}}'
        if path == "/v1/jobs"
        else f'{{"model": "m", {fields}}}'
    )
    reply = await http.post(path, content=body, headers={**user, **JSON})
    assert reply.status_code == 400, reply.text[:300]
    assert "not valid JSON" in reply.json()["error"]["message"]
    assert await snapshot(redis) == before


@pytest.mark.parametrize("number", NON_FINITE)
async def test_nan_and_infinity_are_refused_in_any_body(
    http: httpx.AsyncClient, user, worker, redis: aioredis.Redis, number: str
) -> None:
    before = await snapshot(redis)
    job = f'{{"model": "m", "wait_for_worker": true, "request": {{"messages": {MESSAGES}, '
    poll = json.dumps(poll_body())[:-1]
    bodies = [
        ("/v1/jobs", user, job + f'"temperature": {number}}}}}'),
        ("/v1/jobs", user, job + f'"tools": [{{"x": {{"y": [{number}]}}}}]}}}}'),
        ("/v1/chat/completions", user, f'{{"model": "m", "messages": {MESSAGES}, "x": {number}}}'),
        ("/v1/worker/poll", worker, poll + f', "fallback_after_s": {number}}}'),
        ("/v1/worker/poll", worker, poll + f', "gpus": [{{"index": 0, "uuid": "u", "name": '
         f'"g", "temperature_c": {number}}}]}}'),
        ("/v1/worker/jobs/job_x/complete", worker,
         f'{{"lease_token": "t", "result": {{"data": [{{"embedding": [0.5, {number}]}}]}}}}'),
    ]  # fmt: skip
    for path, key, body in bodies:
        reply = await http.post(path, content=body, headers={**key, **JSON})
        assert reply.status_code == 400, (path, body, reply.text[:300])
        message = reply.json()["error"]["message"]
        assert "not a JSON number" in message or "range" in message or "finite" in message
    assert await snapshot(redis) == before


async def test_finite_numbers_still_pass(http: httpx.AsyncClient, user) -> None:
    request = {"messages": [{"role": "user", "content": "NaN Infinity"}], "temperature": 1e300}
    reply = await http.post("/v1/jobs", json={**CHAT, "request": request}, headers=user)
    assert reply.status_code == 201, reply.text
    assert reply.json()["request"]["temperature"] == 1e300


def _poll(**changes) -> dict:
    return {**poll_body(), **changes}


GPU = {"index": 0, "uuid": "GPU-1", "name": "H100"}
TOO_BIG_POLLS = [
    _poll(models=["m" * 257]),
    _poll(models=["m", "x" * 20_000]),
    _poll(health={"state": "warn", "reasons": ["r" * 1025]}),
    _poll(health={"state": "warn", "reasons": ["r"] * 1025}),
    _poll(gpus=[{**GPU, "name": "n" * 257}]),
    _poll(gpus=[{**GPU, "uuid": "u" * 129}]),
    _poll(gpus=[{**GPU, "throttle_reasons": ["t" * 65]}]),
    _poll(gpus=[{**GPU, "throttle_reasons": ["t"] * 65}]),
    _poll(fallback_after_s=8.95e307),  # found by the fuzzer: was a 500 (float to int)
]


@pytest.mark.parametrize("body", TOO_BIG_POLLS)
async def test_a_poll_past_the_bounds_is_400(http: httpx.AsyncClient, user, worker, body) -> None:
    reply = await http.post("/v1/worker/poll", json=body, headers=worker)
    assert reply.status_code == 400, reply.text[:300]
    assert (await http.get("/v1/workers", headers=user)).json()["data"] == []


async def test_a_poll_at_the_bounds_passes(http: httpx.AsyncClient, worker) -> None:
    body = _poll(
        models=["m" * 256],
        health={"state": "warn", "reasons": ["r" * 1024] * 4},
        gpus=[{**GPU, "uuid": "u" * 128, "name": "n" * 256, "throttle_reasons": ["t" * 64]}],
    )
    reply = await http.post("/v1/worker/poll", json=body, headers=worker)
    assert reply.status_code == 200, reply.text[:300]


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({"k": "v" * 513}, "metadata.k"),
        ({"k" * 65: "v"}, "metadata.kkk"),
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
    ],
)
async def test_metadata_past_openais_bounds_is_400(
    http: httpx.AsyncClient, user, redis: aioredis.Redis, metadata: dict, param: str
) -> None:
    before = await snapshot(redis)
    reply = await http.post("/v1/jobs", json={**CHAT, "metadata": metadata}, headers=user)
    assert reply.status_code == 400, reply.text[:300]
    assert reply.json()["error"]["param"].startswith(param)
    batch = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "metadata": metadata}
    reply = await http.post("/v1/batches", json=batch, headers=user)
    assert reply.status_code == 400, reply.text[:300]
    assert await snapshot(redis) == before


async def test_metadata_at_the_bounds_passes(http: httpx.AsyncClient, user) -> None:
    metadata = {"k" * 64: "v" * 512, **{f"k{i}": "" for i in range(15)}}
    reply = await http.post("/v1/jobs", json={**CHAT, "metadata": metadata}, headers=user)
    assert reply.status_code == 201, reply.text[:300]
    assert reply.json()["metadata"] == metadata


async def test_a_fail_report_past_the_bounds_is_400(http: httpx.AsyncClient, worker) -> None:
    for error in ({"message": "m", "type": "t" * 65}, {"message": "m", "code": "c" * 129}):
        body = {"lease_token": "t", "error": error}
        reply = await http.post("/v1/worker/jobs/job_x/fail", json=body, headers=worker)
        assert reply.status_code == 400, reply.text[:300]
    fits = {"lease_token": "t", "error": {"message": "m", "type": "t" * 64, "code": "c" * 128}}
    reply = await http.post("/v1/worker/jobs/job_x/fail", json=fits, headers=worker)
    assert reply.status_code == 404  # past validation: there is no such job


async def test_a_long_error_message_is_cut_not_refused(http: httpx.AsyncClient, user, worker):
    """A worker's error text is the backend's or an exception's; cutting it keeps the job's
    failure on record where a refusal would leave the job running until its lease ends."""
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    lease = await lease_one(http, worker)
    body = {"lease_token": lease["lease_token"], "error": {"message": "e" * 20_000}}
    reply = await http.post(f"/v1/worker/jobs/{job['id']}/fail", json=body, headers=worker)
    assert reply.status_code == 200, reply.text[:300]
    failed = (await http.get(f"/v1/jobs/{job['id']}", headers=user)).json()
    assert failed["status"] == "failed" and failed["error"]["message"] == "e" * 4096
