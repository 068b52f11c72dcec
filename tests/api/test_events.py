"""A job's SSE stream: order, attempts, restart, and resuming with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json

import httpx
from httpx_sse import aconnect_sse

from garage.broker.store import Store

from .conftest import CHAT, poll_body


async def read_stream(http, job_id, headers, *, last_event_id=None, stop_after=None):
    events = []
    if last_event_id:
        headers = {**headers, "Last-Event-ID": last_event_id}
    async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as sse:
        async for event in sse.aiter_sse():
            events.append((event.id, event.event, json.loads(event.data)))
            if stop_after and len(events) == stop_after:
                break
    return events


async def post(http, worker, job_id, verb, lease, **body):
    reply = await http.post(
        f"/v1/worker/jobs/{job_id}/{verb}",
        json={"lease_token": lease["lease_token"], **body},
        headers=worker,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_stream_follows_the_job_live(http: httpx.AsyncClient, user, worker) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    reader = asyncio.create_task(read_stream(http, job["id"], user))
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    for piece in ("Hel", "lo", " world"):
        await post(http, worker, job["id"], "report", lease, text=piece)
    await post(http, worker, job["id"], "complete", lease, result={"text": "Hello world"})
    events = await asyncio.wait_for(reader, 10)
    kinds = [kind for _, kind, _ in events]
    assert kinds == ["status", "status", "delta", "delta", "delta", "done"]
    assert "".join(data["text"] for _, kind, data in events if kind == "delta") == "Hello world"
    assert all(data["attempt"] == 1 for _, kind, data in events if kind == "delta")
    assert events[-1][2]["result"] == {"text": "Hello world"}


async def test_resume_with_last_event_id_loses_and_repeats_nothing(
    http: httpx.AsyncClient, user, worker
) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    for piece in "abcdef":
        await post(http, worker, job["id"], "report", lease, text=piece)
    await post(http, worker, job["id"], "complete", lease, result={})
    everything = await read_stream(http, job["id"], user)
    first = await read_stream(http, job["id"], user, stop_after=4)
    rest = await read_stream(http, job["id"], user, last_event_id=first[-1][0])
    assert first + rest == everything


async def test_restart_separates_attempts(
    http: httpx.AsyncClient, user, worker, broker, store: Store
) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    await post(http, worker, job["id"], "report", lease, text="first try")
    broker.clock.advance(31)
    await store.leases.reap()
    [lease2] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    await post(http, worker, job["id"], "complete", lease2, text="second", result={})
    events = await read_stream(http, job["id"], user)
    kinds = [kind for _, kind, _ in events]
    restart = kinds.index("restart")
    assert kinds.index("delta") < restart < len(kinds) - 1
    after = [data for _, kind, data in events[restart:] if kind == "delta"]
    assert [d["text"] for d in after] == ["second"] and after[0]["attempt"] == 2
    assert events[restart][2]["attempt"] == 2
