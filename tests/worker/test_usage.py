"""Usage through the session's broker and the real worker daemon on the fake backends: the
backend's counts where it reports them, its tokenizer's where it does not, an estimate
(marked) where it has neither, what a cancelled stream actually streamed, and the owner's
totals adding up to the jobs'."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from httpx_sse import aconnect_sse

from garage.client import WorkerAPI
from garage.worker.backends import make_backend
from garage.worker.daemon import Worker
from garage.worker.settings import WorkerSettings
from garage.worker.usage import estimate_tokens
from tests.fakes import FakeConfig, FakeServer, FakeState, count_tokens
from tests.fakes import ollama as ollama_fake
from tests.fakes import openai as openai_fake

from ..conftest import ADMIN_KEY, LiveBroker
from ..support import eventually

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PROMPT = "one two three four five six seven"  # the fakes answer "echo: " + the prompt
REPLY = "echo: " + PROMPT


@dataclass
class Rig:
    http: httpx.AsyncClient  # the broker, as the user who submits
    fake: FakeState
    user_id: str


@pytest.fixture
async def start_rig(live_broker: LiveBroker, redis) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    """A fake backend of a kind, a worker daemon on it, and a fresh user key."""
    cleanups: list[Callable[[], object]] = []

    async def start(kind: str, **config) -> Rig:
        state = FakeState(FakeConfig(models=["m"], **config))
        build = openai_fake.build_app if kind == "openai" else ollama_fake.build_app
        server = FakeServer(build(state)).start()
        cleanups.append(server.stop)
        async with httpx.AsyncClient(base_url=live_broker.url, headers=ADMIN) as admin:
            worker_key = (
                await admin.post("/v1/admin/keys", json={"role": "worker", "name": "rig"})
            ).json()["key"]
            user = (await admin.post("/v1/admin/keys", json={"role": "user", "name": "u"})).json()
        settings = WorkerSettings(
            broker=live_broker.url,
            token=worker_key,
            backend=kind,
            backend_url=server.url,
            name=f"{kind}-rig",
            health_interval_s=0.1,
            poll_wait_s=2,
        )
        backend_http = httpx.AsyncClient(timeout=30)
        api = WorkerAPI(live_broker.url, worker_key)
        worker = Worker(
            settings, api=api, backend=make_backend(kind, server.url, backend_http), gpu=None
        )
        task = asyncio.create_task(worker.run())
        http = httpx.AsyncClient(
            base_url=live_broker.url,
            headers={"Authorization": f"Bearer {user['key']}"},
            timeout=30,
        )

        async def stop() -> None:
            worker.request_stop()
            worker.request_stop()
            await asyncio.wait_for(task, 20)
            for client in (backend_http, http):
                await client.aclose()
            await api.aclose()

        cleanups.append(stop)
        await eventually(lambda: _serving(http), what="the worker to serve m")
        return Rig(http, state, user["id"])

    yield start
    for cleanup in reversed(cleanups):
        outcome = cleanup()
        if asyncio.iscoroutine(outcome):
            await outcome


async def _serving(http: httpx.AsyncClient) -> bool:
    models = (await http.get("/v1/models")).json()["data"]
    return any(card["id"] == "m" for card in models)


def chat(text: str = PROMPT, **params) -> dict:
    return {"model": "m", "request": {"messages": [{"role": "user", "content": text}], **params}}


async def run(rig: Rig, body: dict) -> dict:
    reply = await rig.http.post("/v1/jobs", json=body, headers={"Prefer": "wait=30"})
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["status"] == "succeeded", job
    return job


async def test_usage_the_backend_reports_is_taken_as_it_is(start_rig) -> None:
    rig = await start_rig("openai")
    job = await run(rig, chat())
    record = rig.fake.requests[-1]
    assert record.final["usage"]["completion_tokens"] == 8  # the usage chunk
    assert job["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 8,
        "total_tokens": 15,
        "estimated": False,
    }
    assert rig.fake.tokenized == []  # nothing to count


@pytest.mark.parametrize("tokenizer", ["llama.cpp", "vllm"])
async def test_no_usage_chunk_is_counted_by_the_servers_tokenizer_exactly(
    start_rig, tokenizer: str
) -> None:
    rig = await start_rig("openai", include_usage=False, tokenize=tokenizer)
    job = await run(rig, chat())
    exact = {"prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15, "estimated": False}
    assert job["usage"] == exact
    assert job["result"]["usage"] == exact  # what an OpenAI client reads, too
    job = await run(rig, chat("a b"))
    assert job["usage"]["completion_tokens"] == count_tokens(["echo: a b"])


async def test_no_usage_chunk_and_no_tokenizer_is_estimated_and_marked(start_rig) -> None:
    rig = await start_rig("openai", include_usage=False)
    job = await run(rig, chat())
    # The documented rule: a token per 4 characters, rounded up (33 and 39 characters).
    assert (len(PROMPT), len(REPLY)) == (33, 39)
    assert job["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 10,
        "total_tokens": 19,
        "estimated": True,
    }


async def test_ollamas_counts(start_rig) -> None:
    rig = await start_rig("ollama")
    job = await run(rig, chat())
    final = rig.fake.requests[-1].final
    assert (final["prompt_eval_count"], final["eval_count"]) == (7, 8)
    assert job["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 8,
        "total_tokens": 15,
        "estimated": False,
    }


async def streamed_words(http: httpx.AsyncClient, job_id: str, words: int) -> str:
    """Reads the job's events until its streamed text has `words` words."""
    text = ""
    async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as events:
        async for event in events.aiter_sse():
            data = json.loads(event.data)
            if data["type"] == "delta":
                text += data["text"]
                if len(text.split()) >= words:
                    return text
    raise AssertionError(f"the stream ended with {text!r}")


@pytest.mark.parametrize(
    ("config", "estimated"),
    [({"tokenize": "vllm"}, False), ({"include_usage": False}, True)],
    ids=["tokenizer", "estimate"],
)
async def test_a_job_cancelled_mid_stream_is_charged_what_was_streamed(
    start_rig, config: dict, estimated: bool
) -> None:
    rig = await start_rig("openai", stall_after=3, **config)  # then silence, until cancelled
    job_id = (await rig.http.post("/v1/jobs", json=chat(max_tokens=100))).json()["id"]
    streamed = await asyncio.wait_for(streamed_words(rig.http, job_id, 3), 20)
    assert streamed == "echo: one two"
    assert (await rig.http.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200

    async def charged() -> dict | None:
        job = (await rig.http.get(f"/v1/jobs/{job_id}")).json()
        return job if job["usage"] else None

    job = await eventually(charged, what="the cancelled job's usage")
    assert job["status"] == "cancelled"
    if estimated:
        prompt, completion = estimate_tokens(PROMPT), estimate_tokens(streamed)
    else:
        prompt, completion = 7, 3  # not 0, and not max_tokens
    assert job["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "estimated": estimated,
    }
    [totals] = (await rig.http.get("/v1/usage")).json()["data"]
    assert (totals["jobs"], totals["prompt_tokens"], totals["completion_tokens"]) == (
        1,
        prompt,
        completion,
    )
    assert totals["estimated_tokens"] == (prompt + completion if estimated else 0)


async def test_the_owners_totals_add_up_over_a_mix_of_jobs(
    start_rig, live_broker: LiveBroker
) -> None:
    rig = await start_rig("openai", include_usage=False, tokenize="llama.cpp")
    jobs = [await run(rig, chat(text)) for text in ("a", "a b", "a b c d e")]
    rig.fake.configure(tokenize=None)  # the worker keeps the format it found...
    jobs.append(await run(rig, chat("x y")))
    rig.fake.configure(tokenize="llama.cpp", include_usage=True)
    jobs.append(await run(rig, chat("p q r")))
    queued = (
        await rig.http.post("/v1/jobs", json={**chat(), "model": "nobody", "wait_for_worker": True})
    ).json()
    await rig.http.post(f"/v1/jobs/{queued['id']}/cancel")  # never ran: not counted

    report = (await rig.http.get("/v1/usage")).json()
    today = datetime.fromtimestamp(live_broker.clock() / 1000, UTC).date().isoformat()
    [row] = report["data"]
    assert (row["day"], row["model"], row["owner"]) == (today, "m", None)
    assert row["jobs"] == len(jobs) == 5
    assert row["prompt_tokens"] == sum(j["usage"]["prompt_tokens"] for j in jobs)
    assert row["completion_tokens"] == sum(j["usage"]["completion_tokens"] for j in jobs)
    estimated = [j for j in jobs if j["usage"]["estimated"]]
    assert len(estimated) == 1  # ...which the server then refused: estimated, marked
    assert row["estimated_tokens"] == estimated[0]["usage"]["total_tokens"]
    assert report["total"] == {k: row[k] for k in report["total"]}


async def test_a_backend_error_after_some_text_charges_what_was_streamed(start_rig) -> None:
    rig = await start_rig("openai", error_after=2, tokenize="llama.cpp")
    body = {**chat(max_tokens=100), "max_attempts": 1}
    reply = await rig.http.post("/v1/jobs", json=body, headers={"Prefer": "wait=30"})
    job = reply.json()
    assert job["status"] == "failed" and job["error"]["type"] == "backend_unavailable"
    assert job["usage"] == {  # the prompt, and "echo: one" streamed before the error
        "prompt_tokens": 7,
        "completion_tokens": 2,
        "total_tokens": 9,
        "estimated": False,
    }
    [row] = (await rig.http.get("/v1/usage")).json()["data"]
    assert (row["jobs"], row["prompt_tokens"], row["completion_tokens"]) == (1, 7, 2)
