"""OpenAI's Batch API through the official SDK: upload, create, live counts, output and
error files, cancel, and validation before anything is queued; and the long-poll on a
batch's progress over plain HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import openai
import pytest
import redis.asyncio as aioredis

from garage.broker.jobs.service import _RECHECK_S
from garage.broker.store import Store, keys

from ..conftest import ADMIN_KEY, LiveBroker, Network
from ..support import eventually, wait_until
from .conftest import poll_body

IMAGE = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}


@pytest.fixture
def sdk(network: Network) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{network.url}/v1", api_key=network.user_key, max_retries=0)


def line(custom_id: str, content, url: str = "/v1/chat/completions", **body) -> str:
    if url == "/v1/chat/completions":
        body = {"model": "m", "messages": [{"role": "user", "content": content}], **body}
    elif url == "/v1/embeddings":
        body = {"model": "m", "input": content, **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def upload(sdk: openai.OpenAI, lines: list[str]):
    return sdk.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")


def finished(sdk: openai.OpenAI, batch_id: str):
    def ended():
        batch = sdk.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "cancelled", "expired", "failed") else None

    return wait_until(ended, timeout_s=60, what=f"batch {batch_id} to end")


def test_a_batch_from_upload_to_output_file(sdk: openai.OpenAI) -> None:
    lines = [line(f"req-{i}", f"prompt {i}") for i in range(20)]
    lines.insert(7, line("bad-one", [IMAGE]))  # the backend rejects this one
    uploaded = upload(sdk, lines)
    assert uploaded.purpose == "batch" and uploaded.bytes == len("\n".join(lines).encode())
    assert sdk.files.content(uploaded.id).text == "\n".join(lines)

    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "test"},
    )
    assert batch.status == "in_progress" and batch.request_counts.total == 21
    done = finished(sdk, batch.id)
    assert done.status == "completed" and done.metadata == {"run": "test"}
    assert (done.request_counts.completed, done.request_counts.failed) == (20, 1)
    assert done.completed_at >= done.created_at

    outputs = [json.loads(x) for x in sdk.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in outputs] == [f"req-{i}" for i in range(20)]  # input order
    first = outputs[0]["response"]
    assert first["status_code"] == 200
    assert first["body"]["choices"][0]["message"]["content"] == "echo: prompt 0"
    [error] = [json.loads(x) for x in sdk.files.content(done.error_file_id).text.splitlines()]
    assert error["custom_id"] == "bad-one" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["type"] == "backend_rejected"
    assert [b.id for b in sdk.batches.list()] == [batch.id]


def test_embeddings_batch(sdk: openai.OpenAI) -> None:
    uploaded = upload(sdk, [line(f"e{i}", f"text {i}", url="/v1/embeddings") for i in range(3)])
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = finished(sdk, batch.id)
    outputs = [json.loads(x) for x in sdk.files.content(done.output_file_id).text.splitlines()]
    assert [len(o["response"]["body"]["data"][0]["embedding"]) for o in outputs] == [8, 8, 8]
    assert done.error_file_id is None


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (['{"custom_id": "a"'], "line 1: not valid JSON at column 18"),
        ([line("a", "x"), line("a", "y")], "line 2: custom_id 'a' already used on line 1"),
        ([line("a", "x"), line("b", "y", url="/v1/embeddings")], "line 2: 'url' /v1/embeddings"),
        (
            [
                line("a", "x"),
                json.dumps(
                    {
                        "custom_id": "b",
                        "url": "/v1/chat/completions",
                        "body": {"messages": [{"role": "user"}]},
                    }
                ),
            ],
            "line 2: body.model must name a model",
        ),
        (
            [
                line("a", "x"),
                line("b", "y", temperature=1).replace('"messages": [{', '"messages": [7, {'),
            ],
            "line 2: request.messages: message 0 must be an object",
        ),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_queued(
    sdk: openai.OpenAI, network: Network, lines: list[str], says: str
) -> None:
    uploaded = upload(sdk, lines)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert says in bad.value.message and bad.value.code == "invalid_batch_line"
    assert list(sdk.batches.list()) == []
    jobs = httpx.get(
        f"{network.url}/v1/jobs", headers={"Authorization": f"Bearer {network.user_key}"}
    )
    assert jobs.json()["data"] == []  # nothing was queued


def test_cancel_a_batch(sdk: openai.OpenAI, network: Network) -> None:
    network.backend.configure(hang=True)
    uploaded = upload(sdk, [line(f"r{i}", f"p{i}") for i in range(30)])
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = finished(sdk, batch.id)
    assert done.status == "cancelled" and done.request_counts.failed == 30
    errors = [json.loads(x) for x in sdk.files.content(done.error_file_id).text.splitlines()]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert len(errors) == 30


def test_files_are_private_and_deletable(sdk: openai.OpenAI, network: Network) -> None:
    uploaded = upload(sdk, [line("a", "x")])
    other_key = httpx.post(
        f"{network.url}/v1/admin/keys",
        json={"role": "user", "name": "mallory"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    ).json()["key"]
    with openai.OpenAI(base_url=f"{network.url}/v1", api_key=other_key) as mallory:
        with pytest.raises(openai.NotFoundError):
            mallory.files.content(uploaded.id)
        with pytest.raises(openai.NotFoundError):
            mallory.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
    with pytest.raises(openai.BadRequestError):
        sdk.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    deleted = sdk.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(uploaded.id)


def test_batch_limits(sdk: openai.OpenAI, network: Network) -> None:
    too_many = [line(f"r{i}", "x") for i in range(50_001)]
    uploaded = upload(sdk, too_many)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert "line 50001: a batch holds at most 50000 requests" in bad.value.message

    # A file over 200 MB is refused from its Content-Length, before a byte is read.
    host, port = network.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + network.user_key.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + b"Content-Length: 300000000\r\n\r\n"
        )
        sock.settimeout(10)
        answer = ""
        while "payload_too_large" not in answer and (chunk := sock.recv(4096)):
            answer += chunk.decode()
    assert answer.startswith("HTTP/1.1 413") and "payload_too_large" in answer


# Waiting on a batch's progress: GET /v1/batches/{id}?wait_s=&after_done=
# (no worker here: the tests lease and end the jobs through the store)


async def _create_batch(http: httpx.AsyncClient, user: dict[str, str], count: int) -> str:
    text = "\n".join(line(f"r{i}", f"p{i}") for i in range(count))
    uploaded = await http.post(
        "/v1/files", headers=user, files={"file": ("in.jsonl", text.encode())},
        data={"purpose": "batch"},
    )  # fmt: skip
    created = await http.post(
        "/v1/batches",
        headers=user,
        json={"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions"},
    )
    assert created.status_code == 200, created.text
    return created.json()["id"]


async def _end_jobs(store: Store, count: int) -> None:
    leases = await store.leases.claim(worker_id="w1", lease_owner="wk", models=["m"], slots=count)
    assert len(leases) == count
    for lease in leases:
        await store.leases.complete(
            lease.job_id, token=lease.lease_token, lease_owner="wk", result={"ok": True}
        )


async def _waiters(redis: aioredis.Redis, batch_id: str) -> int:
    """Broker processes subscribed to the batch's channel: a wait on it is under way."""
    [(_, count)] = await redis.pubsub_numsub(keys.batch_channel(batch_id))
    return count


async def test_reading_a_batch_waits_for_its_progress(
    http: httpx.AsyncClient, user: dict[str, str], store: Store, redis: aioredis.Redis
) -> None:
    batch_id = await _create_batch(http, user, 3)
    url = f"/v1/batches/{batch_id}"

    started = time.monotonic()
    unchanged = await http.get(url, params={"wait_s": 0.3, "after_done": 0}, headers=user)
    assert unchanged.status_code == 200 and time.monotonic() - started >= 0.3
    assert unchanged.json()["request_counts"]["completed"] == 0

    waiting = asyncio.create_task(
        http.get(url, params={"wait_s": 30, "after_done": 0}, headers=user)
    )
    await eventually(lambda: _waiters(redis, batch_id), what="the wait to subscribe")
    ended_at = time.monotonic()
    await _end_jobs(store, 1)
    answer = (await waiting).json()
    # Woken by the count's message, not by the periodic re-read.
    assert time.monotonic() - ended_at < _RECHECK_S / 2
    assert answer["status"] == "in_progress" and answer["request_counts"]["completed"] == 1

    # Already past after_done: answered at once.
    past = await http.get(url, params={"wait_s": 30, "after_done": 0}, headers=user)
    assert past.json()["request_counts"]["completed"] == 1

    # Without after_done only a final status answers, once the output file is written.
    async def no_waiters() -> bool:
        return await _waiters(redis, batch_id) == 0

    await eventually(no_waiters, what="the first wait to unsubscribe")
    final = asyncio.create_task(http.get(url, params={"wait_s": 30}, headers=user))
    await eventually(lambda: _waiters(redis, batch_id), what="the wait to subscribe")
    await _end_jobs(store, 2)
    done = (await final).json()
    assert done["status"] == "completed" and done["output_file_id"]
    assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}


@pytest.mark.parametrize(
    "params", [{"wait_s": 61}, {"wait_s": -1}, {"after_done": -1}, {"wait_s": "soon"}]
)
async def test_a_bad_wait_is_refused(
    http: httpx.AsyncClient, user: dict[str, str], params: dict
) -> None:
    batch_id = await _create_batch(http, user, 1)
    answer = await http.get(f"/v1/batches/{batch_id}", params=params, headers=user)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_request"


async def test_a_new_batch_wakes_as_many_parked_polls_as_it_has_jobs(
    http: httpx.AsyncClient, user: dict[str, str], worker: dict[str, str], broker: LiveBroker
) -> None:
    """Its commit publishes one wake per model, carrying the number of jobs."""
    notifier = broker.app.state.broker.notifier
    notifier.hints.woken("m")  # as after a wake: whatever an earlier test left is unknown
    polls = [
        asyncio.create_task(
            http.post(
                "/v1/worker/poll", json=poll_body(wait_s=20, worker_id=f"w{i}"), headers=worker
            )
        )
        for i in range(3)
    ]

    async def parked() -> bool:
        return notifier.polls.waiting("m") == 3

    await eventually(parked, what="three parked polls")
    created_at = time.monotonic()
    batch_id = await _create_batch(http, user, 3)
    replies = await asyncio.wait_for(asyncio.gather(*polls), 15)
    assert time.monotonic() - created_at < 10  # woken, not timed out after 20 s
    leased = [lease for reply in replies for lease in reply.json()["leases"]]
    assert len(leased) == 3 and len({lease["job_id"] for lease in leased}) == 3
    batch = (await http.get(f"/v1/batches/{batch_id}", headers=user)).json()
    assert batch["request_counts"]["total"] == 3
