"""Two broker processes on one Redis act as one service."""

from __future__ import annotations

import asyncio
import json

import httpx
from httpx_sse import aconnect_sse

from .conftest import ADMIN_KEY, make_key

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "hi"}]},
    "wait_for_worker": True,
}


def two_brokers(start_broker, redis_url: str) -> tuple:
    """Brokers A and B on one Redis, and a worker key's headers."""
    a = start_broker("--redis-url", redis_url, name="a")
    b = start_broker("--redis-url", redis_url, name="b")
    key = make_key(a.url, "worker", "rig")
    return a, b, {"Authorization": f"Bearer {key}"}


async def test_submit_on_one_lease_through_the_other_stream_across(
    start_broker, redis_url: str, redis
) -> None:
    a, b, worker = two_brokers(start_broker, redis_url)
    async with httpx.AsyncClient(timeout=30) as http:
        # A worker parks on broker B before the job exists; the wake crosses processes.
        poll = asyncio.create_task(
            http.post(
                f"{b.url}/v1/worker/poll",
                json={"worker_id": "w1", "models": ["m"], "slots_free": 1, "wait_s": 20},
                headers=worker,
            )
        )
        await asyncio.sleep(0.3)
        job = (await http.post(f"{a.url}/v1/jobs", json=CHAT, headers=ADMIN)).json()
        [lease] = (await asyncio.wait_for(poll, 10)).json()["leases"]
        assert lease["job_id"] == job["id"]

        async def read_on_a() -> list[dict]:
            seen = []
            async with aconnect_sse(
                http, "GET", f"{a.url}/v1/jobs/{job['id']}/events", headers=ADMIN
            ) as sse:
                async for event in sse.aiter_sse():
                    seen.append(json.loads(event.data))
            return seen

        reader = asyncio.create_task(read_on_a())
        await asyncio.sleep(0.3)
        for piece in ("to", "ken", "s"):
            reply = await http.post(
                f"{b.url}/v1/worker/jobs/{job['id']}/report",
                json={"lease_token": lease["lease_token"], "text": piece},
                headers=worker,
            )
            assert reply.status_code == 200
        await http.post(
            f"{b.url}/v1/worker/jobs/{job['id']}/complete",
            json={"lease_token": lease["lease_token"], "result": {"text": "tokens"}},
            headers=worker,
        )
        events = await asyncio.wait_for(reader, 10)
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "tokens"
    assert events[-1]["type"] == "done"
    assert a.stop() == 0 and b.stop() == 0


async def test_a_poll_that_parks_on_known_empty_queues_gets_the_other_brokers_job(
    start_broker, redis_url: str, redis
) -> None:
    a, b, worker = two_brokers(start_broker, redis_url)
    async with httpx.AsyncClient(timeout=30) as http:
        poll = {"worker_id": "w1", "models": ["m"], "slots_free": 1}
        # B's claim finds nothing, so B knows: the next poll parks without asking Redis.
        empty = await http.post(
            f"{b.url}/v1/worker/poll", json={**poll, "wait_s": 0}, headers=worker
        )
        assert empty.json()["leases"] == []
        parked = asyncio.create_task(
            http.post(f"{b.url}/v1/worker/poll", json={**poll, "wait_s": 20}, headers=worker)
        )
        await asyncio.sleep(0.3)
        batch_job = {**CHAT, "lane": "batch"}
        job = (await http.post(f"{a.url}/v1/jobs", json=batch_job, headers=ADMIN)).json()
        [lease] = (await asyncio.wait_for(parked, 10)).json()["leases"]
        assert lease["job_id"] == job["id"]


async def test_a_wait_on_one_broker_ends_with_a_result_posted_to_the_other(
    start_broker, redis_url: str, redis
) -> None:
    a, b, worker = two_brokers(start_broker, redis_url)
    async with httpx.AsyncClient(timeout=30) as http:
        job = (await http.post(f"{a.url}/v1/jobs", json=CHAT, headers=ADMIN)).json()
        waiting = asyncio.create_task(
            http.get(f"{a.url}/v1/jobs/{job['id']}?wait_s=30", headers=ADMIN)
        )
        poll = {"worker_id": "w1", "models": ["m"], "slots_free": 1, "wait_s": 5}
        [lease] = (await http.post(f"{b.url}/v1/worker/poll", json=poll, headers=worker)).json()[
            "leases"
        ]
        await asyncio.sleep(0.3)  # the GET is waiting on A (it marked the job watched)
        started = asyncio.get_running_loop().time()
        await http.post(
            f"{b.url}/v1/worker/jobs/{job['id']}/complete",
            json={"lease_token": lease["lease_token"], "result": {"text": "done"}},
            headers=worker,
        )
        ended = (await asyncio.wait_for(waiting, 20)).json()
        # Released by B's message, not by A re-reading on its own every 5 s.
        assert asyncio.get_running_loop().time() - started < 4
    assert ended["status"] == "succeeded" and ended["result"] == {"text": "done"}


async def test_a_key_revoked_on_one_broker_is_refused_at_once_on_the_other(
    start_broker, redis_url: str, redis
) -> None:
    a, b, _ = two_brokers(start_broker, redis_url)  # each caches keys for 5 s by default
    async with httpx.AsyncClient(timeout=30) as http:
        made = await http.post(
            f"{a.url}/v1/admin/keys", json={"role": "user", "name": "bob"}, headers=ADMIN
        )
        user = {"Authorization": f"Bearer {made.json()['key']}"}
        assert (await http.get(f"{b.url}/v1/jobs", headers=user)).status_code == 200  # cached
        revoked = await http.delete(f"{a.url}/v1/admin/keys/{made.json()['id']}", headers=ADMIN)
        assert revoked.status_code == 204
        for _ in range(20):  # the revocation crosses on pub/sub, well within the cache's 5 s
            if (await http.get(f"{b.url}/v1/jobs", headers=user)).status_code == 401:
                break
            await asyncio.sleep(0.1)
        assert (await http.get(f"{b.url}/v1/jobs", headers=user)).status_code == 401
    assert a.stop() == 0 and b.stop() == 0
