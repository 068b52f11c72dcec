"""Contribution through the session's broker and real worker daemons on the fake backends:
a mix of jobs (succeeded, failed after some text, cancelled mid-stream, fenced after its
lease moved to another rig) adds up, per worker key and per owner, to exactly what the
backends produced for the results the broker accepted, and to the time those ran."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from garage.broker.store import keys
from garage.client import WorkerAPI
from garage.worker.backends import make_backend
from garage.worker.daemon import Worker
from garage.worker.settings import WorkerSettings
from garage.worker.usage import estimate_tokens
from tests.fakes import FakeConfig, FakeServer, FakeState, Outcome
from tests.fakes import ollama as ollama_fake
from tests.fakes import openai as openai_fake

from ..conftest import ADMIN_KEY, LiveBroker
from ..support import eventually

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Rig:
    key_id: str
    worker: Worker
    fake: FakeState

    def done(self, prompt: str) -> list:
        """The fake's requests for `prompt` that it answered whole."""
        return [
            r for r in self.fake.requests
            if prompt in str(r.body) and r.outcome is Outcome.done
        ]  # fmt: skip


@pytest.fixture
async def start_rig(live_broker: LiveBroker, redis) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    """A fake backend of a kind serving `models`, and a worker daemon on it under a new
    worker key (owned by `owner` when given)."""
    cleanups: list[Callable[[], object]] = []
    admin = httpx.AsyncClient(base_url=live_broker.url, headers=ADMIN, timeout=30)

    async def start(kind: str, name: str, models: list[str], *, owner: str | None = None,
                    slots: int = 4, **config) -> Rig:  # fmt: skip
        state = FakeState(FakeConfig(models=models, **config))
        build = openai_fake.build_app if kind == "openai" else ollama_fake.build_app
        server = FakeServer(build(state)).start()
        cleanups.append(server.stop)
        body = {"role": "worker", "name": name, **({"owner": owner} if owner else {})}
        key = (await admin.post("/v1/admin/keys", json=body)).json()
        settings = WorkerSettings(
            broker=live_broker.url, token=key["key"], backend=kind, backend_url=server.url,
            name=name, slots=slots, health_interval_s=0.1, poll_wait_s=2,
        )  # fmt: skip
        backend_http = httpx.AsyncClient(timeout=30)
        api = WorkerAPI(live_broker.url, key["key"])
        worker = Worker(
            settings, api=api, backend=make_backend(kind, server.url, backend_http), gpu=None
        )
        task = asyncio.create_task(worker.run())

        async def stop() -> None:
            worker.request_stop()
            worker.request_stop()
            await asyncio.wait_for(task, 20)
            await backend_http.aclose()
            await api.aclose()

        cleanups.append(stop)

        async def listed() -> bool:
            fleet = (await admin.get("/v1/workers")).json()["data"]
            return any(w["worker_id"] == worker.worker_id for w in fleet)

        await eventually(listed, what=f"the broker to list {name}")
        return Rig(key["id"], worker, state)

    yield start
    for cleanup in reversed(cleanups):
        outcome = cleanup()
        if asyncio.iscoroutine(outcome):
            await outcome
    await admin.aclose()


def chat(model: str, text: str, **fields) -> dict:
    return {"model": model, "request": {"messages": [{"role": "user", "content": text}]},
            **fields}  # fmt: skip


async def test_the_rigs_contributions_add_up_to_what_the_backends_produced(
    start_rig, live_broker: LiveBroker, redis
) -> None:
    clock = live_broker.clock
    async with httpx.AsyncClient(base_url=live_broker.url, headers=ADMIN, timeout=30) as admin:
        olga = (await admin.post("/v1/admin/keys", json={"role": "user", "name": "olga"})).json()
        user = (await admin.post("/v1/admin/keys", json={"role": "user", "name": "u"})).json()
    # Olga's rig estimates its counts (no usage chunk, no tokenizer); the lone rig's Ollama
    # counts exactly; olga's second rig joins later to take over a lease.
    olga1 = await start_rig("openai", "olga-1", ["a", "shared"], owner=olga["id"], slots=1,
                            include_usage=False)  # fmt: skip
    lone = await start_rig("ollama", "lone", ["b"])
    http = httpx.AsyncClient(
        base_url=live_broker.url, headers={"Authorization": f"Bearer {user['key']}"}, timeout=30
    )

    async def run(body: dict) -> dict:
        reply = await http.post("/v1/jobs", json=body, headers={"Prefer": "wait=30"})
        assert reply.status_code == 201, reply.text
        return reply.json()

    async def job(job_id: str) -> dict:
        return (await http.get(f"/v1/jobs/{job_id}")).json()

    async def running(job_id: str, rig: Rig) -> bool:
        found = await job(job_id)
        return found["status"] == "running" and found["worker"] == rig.worker.worker_id

    succeeded = [await run(chat("a", f"alpha {n} " + "word " * n)) for n in range(3)]
    succeeded += [await run(chat("b", f"beta {n} " + "word " * n)) for n in range(3)]
    assert all(j["status"] == "succeeded" for j in succeeded)

    # Busy time is the lease to the result: the broker's (manual) clock moves 7 s while the
    # backend takes 2 s to answer.
    lone.fake.configure(first_token_s=2.0)
    slow_id = (await http.post("/v1/jobs", json=chat("b", "slow one"))).json()["id"]
    await eventually(lambda: running(slow_id, lone), what="the slow job to run")
    clock.advance(7)
    slow = await eventually(lambda: _ended(http, slow_id), what="the slow job to end")
    assert slow["status"] == "succeeded" and slow["timings"]["run_ms"] == 7_000
    succeeded.append(slow)

    # Failed after 2 tokens, and cancelled after 2 tokens: the backend produced text, and
    # the user is charged it, but nothing is earned.
    lone.fake.configure(first_token_s=0.0, error_after=2)
    failed = await run(chat("b", "fails midway please", max_attempts=1))
    assert failed["status"] == "failed" and failed["usage"]["completion_tokens"] >= 1
    lone.fake.configure(error_after=None, stall_after=2)
    stalled = (await http.post("/v1/jobs", json=chat("b", "stalls midway please"))).json()
    await eventually(lambda: _streamed(lone, "stalls midway", 2), what="2 tokens, then silence")
    await http.post(f"/v1/jobs/{stalled['id']}/cancel")
    cancelled = await eventually(lambda: _charged(http, stalled["id"]), what="its usage")
    assert cancelled["status"] == "cancelled" and cancelled["usage"]["completion_tokens"] >= 1
    lone.fake.configure(stall_after=None)

    # Fenced: olga-1 holds a job while its backend takes 3 s to start answering; its lease
    # runs out (the broker's clock jumps past it) and the job moves to olga-2, which
    # completes it. olga-1's next report is refused (409) and earns nothing.
    olga1.fake.configure(first_token_s=3.0)
    moved_id = (await http.post("/v1/jobs", json=chat("shared", "moved between rigs"))).json()["id"]
    await eventually(lambda: running(moved_id, olga1), what="olga-1 to lease the job")
    fenced_before = int(await redis.hget(keys.STATS, "fenced") or 0)
    clock.advance(31)
    assert (await live_broker.store.leases.reap()).requeued == 1
    olga2 = await start_rig("ollama", "olga-2", ["shared"], owner=olga["id"])
    moved = await eventually(lambda: _ended(http, moved_id), what="olga-2 to complete it")
    assert moved["status"] == "succeeded" and moved["worker"] == olga2.worker.worker_id
    succeeded.append(moved)

    async def fenced() -> bool:
        return int(await redis.hget(keys.STATS, "fenced") or 0) > fenced_before

    await eventually(fenced, what="olga-1's late report to be fenced")
    await eventually(lambda: _idle(olga1), what="olga-1 to drop the job")

    report = (await http.get("/v1/contributions", params={"group_by": "key"})).json()
    rows = {row["key"]: row for row in report["data"]}
    assert set(rows) == {olga1.key_id, lone.key_id, olga2.key_id}

    def prompts(rig: Rig) -> list[str]:
        return [j["request"]["messages"][0]["content"] for j in succeeded
                if j["worker"] == rig.worker.worker_id]  # fmt: skip

    # olga-1 estimated its counts: each accepted reply's text, a token per 4 characters.
    olga1_prompts = prompts(olga1)
    assert len(olga1_prompts) == 3 and all(len(olga1.done(p)) == 1 for p in olga1_prompts)
    estimated = sum(estimate_tokens("echo: " + p) for p in olga1_prompts)
    # The exact counters: what their Ollamas said they generated for the accepted results;
    # the failed and cancelled requests were not answered whole.
    exact = {
        rig.key_id: sum(r.completion_tokens for p in prompts(rig) for r in rig.done(p))
        for rig in (lone, olga2)
    }
    # The failed request ended with the server's in-stream error after 2 tokens, the
    # cancelled one was left after 2: both produced text that earns nothing.
    midway = [(r.outcome, r.tokens_sent) for r in lone.fake.requests if "midway" in str(r.body)]
    assert midway == [(Outcome.done, 2), (Outcome.aborted, 2)]
    assert len(lone.fake.requests) == 6 and len(olga2.fake.requests) == 1
    expected = {
        olga1.key_id: (3, 0.0, estimated, estimated),
        lone.key_id: (4, 7.0, exact[lone.key_id], 0),
        olga2.key_id: (1, 0.0, exact[olga2.key_id], 0),
    }
    got = {
        key: (r["jobs"], r["busy_s"], r["completion_tokens"], r["estimated_tokens"])
        for key, r in rows.items()
    }
    assert got == expected
    # ...which is also what the jobs say.
    for rig in (olga1, lone, olga2):
        mine = [j for j in succeeded if j["worker"] == rig.worker.worker_id]
        assert rows[rig.key_id]["completion_tokens"] == sum(
            j["usage"]["completion_tokens"] for j in mine
        )
        assert rows[rig.key_id]["busy_s"] * 1000 == sum(j["timings"]["run_ms"] for j in mine)
    for row in report["data"]:
        assert row["points"] == round(row["busy_s"] + row["completion_tokens"] / 1000, 3)

    by_owner = (await http.get("/v1/contributions", params={"group_by": "owner"})).json()
    owners = {r["owner"]: (r["owner_name"], r["jobs"], r["completion_tokens"])
              for r in by_owner["data"]}  # fmt: skip
    assert owners == {
        olga["id"]: ("olga", 4, estimated + exact[olga2.key_id]),
        None: (None, 4, exact[lone.key_id]),
    }
    own = (await _as(live_broker, lone, "/v1/contributions")).json()
    assert [r["key"] for r in own["data"]] == [lone.key_id]
    await http.aclose()


async def _ended(http: httpx.AsyncClient, job_id: str) -> dict | None:
    job = (await http.get(f"/v1/jobs/{job_id}")).json()
    return job if job["status"] in ("succeeded", "failed", "cancelled", "expired") else None


async def _streamed(rig: Rig, prompt: str, tokens: int) -> bool:
    return any(prompt in str(r.body) and r.tokens_sent >= tokens for r in rig.fake.requests)


async def _charged(http: httpx.AsyncClient, job_id: str) -> dict | None:
    job = (await http.get(f"/v1/jobs/{job_id}")).json()
    return job if job["status"] == "cancelled" and job["usage"] else None


async def _idle(rig: Rig) -> bool:
    return all(r.outcome is not Outcome.open for r in rig.fake.requests)


async def _as(live_broker: LiveBroker, rig: Rig, path: str) -> httpx.Response:
    token = rig.worker.settings.token
    assert token is not None
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=live_broker.url, headers=headers) as client:
        return await client.get(path)
