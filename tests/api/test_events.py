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


async def test_a_stream_resumed_after_its_last_event_ends_at_once(
    http: httpx.AsyncClient, user, worker
) -> None:
    """What a browser's EventSource sends when it reconnects after the `done` event."""
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    await post(http, worker, job["id"], "complete", lease, result={})
    everything = await read_stream(http, job["id"], user)
    assert everything[-1][1] == "done"
    after = await asyncio.wait_for(
        read_stream(http, job["id"], user, last_event_id=everything[-1][0]), 5
    )
    assert after == []


async def test_positions_redis_cannot_hold_are_refused_before_the_stream(
    http: httpx.AsyncClient, user
) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    for position in ("99999999999999999999-0", "18446744073709551615-18446744073709551616"):
        reply = await http.get(
            f"/v1/jobs/{job['id']}/events", headers={**user, "Last-Event-ID": position}
        )
        assert reply.status_code == 400, position
        assert reply.json()["error"]["param"] == "Last-Event-ID"


async def test_streamed_text_reaches_the_reader_without_reading_the_stream_back(
    http: httpx.AsyncClient, user, worker, broker
) -> None:
    """A report to this broker hands its event to the broker's own readers; the reader
    reads the stream only when a message says something else was appended."""
    store = broker.app.state.broker.store
    reads = 0
    original = store.events.read

    async def counting(*args, **kw):
        nonlocal reads
        reads += 1
        return await original(*args, **kw)

    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    store.events.read = counting
    try:
        async with aconnect_sse(http, "GET", f"/v1/jobs/{job['id']}/events", headers=user) as sse:
            events = sse.aiter_sse()
            while (await anext(events)).event != "status" or reads == 0:
                pass  # the status events, read once at the start
            await anext(events)  # status running
            before = reads
            await post(http, worker, job["id"], "report", lease, text="fast")
            delta = await asyncio.wait_for(anext(events), 5)
            assert delta.event == "delta" and json.loads(delta.data)["text"] == "fast"
            assert reads == before  # handed over, not read back
    finally:
        store.events.read = original
