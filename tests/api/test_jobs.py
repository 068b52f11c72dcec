"""Native jobs over HTTP: submit, read, wait, list, cancel, idempotency."""

from __future__ import annotations

import asyncio

import httpx

from .conftest import CHAT, poll_body


async def test_submit_then_read(http: httpx.AsyncClient, user) -> None:
    created = await http.post("/v1/jobs", json=CHAT, headers=user)
    assert created.status_code == 201
    job = created.json()
    assert job["status"] == "queued" and job["id"].startswith("job_")
    assert job["request"]["model"] == "m"
    got = await http.get(f"/v1/jobs/{job['id']}", headers=user)
    assert got.json() == job


async def test_idempotency_key_returns_the_same_job(http: httpx.AsyncClient, user) -> None:
    headers = {**user, "Idempotency-Key": "order-17"}
    first = await http.post("/v1/jobs", json=CHAT, headers=headers)
    again = await http.post("/v1/jobs", json=CHAT, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    listed = (await http.get("/v1/jobs", headers=user)).json()
    assert len(listed["data"]) == 1


async def test_wait_returns_when_the_job_ends(http: httpx.AsyncClient, user, worker) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    waiting = asyncio.create_task(http.get(f"/v1/jobs/{job['id']}?wait_s=20", headers=user))
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    await asyncio.sleep(0)  # let the waiting request park first; correctness does not depend on it
    done = await http.post(
        f"/v1/worker/jobs/{job['id']}/complete",
        json={"lease_token": lease["lease_token"], "result": {"answer": 42}},
        headers=worker,
    )
    assert done.json() == {"cancelled": False, "accepted": True}
    final = (await asyncio.wait_for(waiting, 10)).json()
    assert final["status"] == "succeeded" and final["result"] == {"answer": 42}
    assert final["timings"]["total_ms"] >= 0


async def test_wait_times_out_with_the_job_as_it_is(http: httpx.AsyncClient, user) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    got = await http.get(f"/v1/jobs/{job['id']}?wait_s=0.2", headers=user)
    assert got.status_code == 200 and got.json()["status"] == "queued"


async def test_list_filters_and_pages(http: httpx.AsyncClient, user, broker) -> None:
    ids = []
    for model in ("a", "b", "a"):
        body = {**CHAT, "model": model}
        ids.append((await http.post("/v1/jobs", json=body, headers=user)).json()["id"])
        broker.clock.advance(0.01)
    only_a = (await http.get("/v1/jobs?model=a", headers=user)).json()
    assert [j["id"] for j in only_a["data"]] == [ids[2], ids[0]]
    page = (await http.get("/v1/jobs?limit=2", headers=user)).json()
    assert page["has_more"] and page["last_id"] == ids[1]
    rest = (await http.get(f"/v1/jobs?limit=2&after={page['last_id']}", headers=user)).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and not rest["has_more"]
    queued = (await http.get("/v1/jobs?status=queued", headers=user)).json()
    assert len(queued["data"]) == 3


async def test_cancel_queued_and_finished(http: httpx.AsyncClient, user, worker) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    cancelled = await http.post(f"/v1/jobs/{job['id']}/cancel", headers=user)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json() == {
        "leases": []
    }
    again = await http.post(f"/v1/jobs/{job['id']}/cancel", headers=user)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # idempotent

    done = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    await http.post(
        f"/v1/worker/jobs/{done['id']}/complete",
        json={"lease_token": lease["lease_token"], "result": {}},
        headers=worker,
    )
    late = await http.post(f"/v1/jobs/{done['id']}/cancel", headers=user)
    assert late.status_code == 409 and late.json()["error"]["code"] == "job_ended"
    assert (await http.get(f"/v1/jobs/{done['id']}", headers=user)).json()["status"] == (
        "succeeded"
    )


async def test_cancel_running_reaches_the_worker(http: httpx.AsyncClient, user, worker) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    await http.post(f"/v1/jobs/{job['id']}/cancel", headers=user)
    reply = await http.post(
        f"/v1/worker/jobs/{job['id']}/report",
        json={"lease_token": lease["lease_token"], "text": "late"},
        headers=worker,
    )
    assert reply.json() == {"cancelled": True, "accepted": False}
