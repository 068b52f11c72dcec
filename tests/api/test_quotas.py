"""A key's quotas: submits a minute (GCRA, a minute's burst) and jobs active at once,
refused with 429 and when to retry, set by an admin, counted in the metrics. The broker's
clock is the test's, so a minute passes at will."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ..support import ManualClock
from .conftest import ADMIN, CHAT, new_key, poll_body
from .test_input_bounds import chat_line, create_batch


async def submit(http: httpx.AsyncClient, user: dict[str, str]) -> httpx.Response:
    return await http.post("/v1/jobs", json=CHAT, headers=user)


def refusals(text: str, limit: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "garage_rate_limit_refusals_total" and sample.labels["limit"] == limit
    )


async def test_a_key_sends_its_minute_at_once_then_at_the_rate(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    user = await new_key(http, "user", "alice", requests_per_minute=3)
    other = await new_key(http, "user", "bob", requests_per_minute=3)
    for _ in range(3):
        assert (await submit(http, user)).status_code == 201
    refused = await submit(http, user)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["retry-after"] == "20"  # one submit every 60/3 s
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await submit(http, other)).status_code == 201  # another key is not held back
    clock.advance(19.9)
    assert (await submit(http, user)).status_code == 429
    clock.advance(0.1)
    assert (await submit(http, user)).status_code == 201
    assert (await submit(http, user)).status_code == 429
    jobs = (await http.get("/v1/jobs", headers=user)).json()["data"]
    assert len(jobs) == 4  # a refusal makes nothing
    metrics = (await http.get("/metrics", headers=ADMIN)).text
    assert refusals(metrics, "requests_per_minute") == 3


async def test_a_key_at_its_most_active_jobs_submits_again_once_one_ends(
    http: httpx.AsyncClient,
) -> None:
    user = await new_key(http, "user", "alice", max_active_jobs=2, requests_per_minute=0)
    first = (await submit(http, user)).json()
    assert (await submit(http, user)).status_code == 201
    refused = await submit(http, user)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
    assert refused.json()["error"]["code"] == "too_many_active_jobs"
    assert "2 jobs queued or running" in refused.json()["error"]["message"]
    await http.post(f"/v1/jobs/{first['id']}/cancel", headers=user)
    assert (await submit(http, user)).status_code == 201


async def test_a_job_that_runs_and_ends_frees_its_place(
    http: httpx.AsyncClient, worker: dict[str, str]
) -> None:
    user = await new_key(http, "user", "alice", max_active_jobs=1)
    job = (await submit(http, user)).json()
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    assert (await submit(http, user)).status_code == 429  # running counts as active
    done = await http.post(
        f"/v1/worker/jobs/{job['id']}/complete",
        json={"lease_token": lease["lease_token"], "result": {}},
        headers=worker,
    )
    assert done.status_code == 200
    assert (await submit(http, user)).status_code == 201


async def test_a_batch_is_one_submit_and_its_jobs_count_as_active(
    http: httpx.AsyncClient,
) -> None:
    user = await new_key(http, "user", "alice", max_active_jobs=3, requests_per_minute=2)
    created = await create_batch(http, user, [chat_line("a"), chat_line("b")])
    assert created.status_code == 200, created.text
    too_many = await create_batch(http, user, [chat_line("c"), chat_line("d")])
    assert too_many.status_code == 429
    assert too_many.json()["error"]["code"] == "too_many_active_jobs"
    assert len((await http.get("/v1/jobs", headers=user)).json()["data"]) == 2  # no half batch
    assert (await submit(http, user)).status_code == 201  # the third place; 2 submits used
    metrics = (await http.get("/metrics", headers=ADMIN)).text
    assert refusals(metrics, "active_jobs") == 1


async def test_limits_are_set_listed_and_reset_by_an_admin(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    created = await http.post("/v1/admin/keys", json={"role": "user", "name": "c"}, headers=ADMIN)
    key_id, user = created.json()["id"], {"Authorization": f"Bearer {created.json()['key']}"}
    nothing_own = {"requests_per_minute": None, "max_active_jobs": None, "models": None}
    assert created.json()["limits"] == nothing_own
    assert (await submit(http, user)).status_code == 201  # cached with the defaults
    put = await http.put(
        f"/v1/admin/keys/{key_id}/limits", json={"requests_per_minute": 1}, headers=ADMIN
    )
    assert put.json()["limits"] == {**nothing_own, "requests_per_minute": 1}
    clock.advance(1)  # the submit before took 0.1 s of the old rate's allowance
    assert (await submit(http, user)).status_code == 201
    assert (await submit(http, user)).status_code == 429  # the new limit holds at once
    listed = (await http.get("/v1/admin/keys", headers=ADMIN)).json()
    assert [k["limits"] for k in listed if k["id"] == key_id] == [put.json()["limits"]]
    reset = await http.put(f"/v1/admin/keys/{key_id}/limits", json={}, headers=ADMIN)
    assert reset.json()["limits"]["requests_per_minute"] is None
    for bad in ({"requests_per_minute": -1}, {"max_active_jobs": "many"}, {"rpm": 5}):
        answer = await http.put(f"/v1/admin/keys/{key_id}/limits", json=bad, headers=ADMIN)
        assert answer.status_code == 400, bad
    missing = await http.put("/v1/admin/keys/key_nope/limits", json={}, headers=ADMIN)
    assert missing.status_code == 404


async def test_concurrent_submits_never_overshoot_the_minute(http: httpx.AsyncClient) -> None:
    user = await new_key(http, "user", "alice", requests_per_minute=10)
    answers = await asyncio.gather(*(submit(http, user) for _ in range(40)))
    assert sorted(a.status_code for a in answers) == [201] * 10 + [429] * 30


async def test_a_job_that_names_no_start_timeout_gets_the_brokers_default(
    http: httpx.AsyncClient,
) -> None:
    user = await new_key(http, "user", "alice")
    job = (await submit(http, user)).json()
    created = datetime.fromisoformat(job["created_at"])
    deadline = datetime.fromisoformat(job["start_deadline_at"])
    assert (deadline - created).total_seconds() == 86400  # a day, unless it says
    own = (await http.post("/v1/jobs", json={**CHAT, "start_timeout_s": 60}, headers=user)).json()
    own_deadline = datetime.fromisoformat(own["start_deadline_at"])
    assert (own_deadline - datetime.fromisoformat(own["created_at"])).total_seconds() == 60


async def test_a_rotated_key_keeps_its_id_jobs_and_limits_and_drops_its_old_secret(
    http: httpx.AsyncClient,
) -> None:
    created = await http.post("/v1/admin/keys", json={"role": "user", "name": "r"}, headers=ADMIN)
    key_id, old = created.json()["id"], {"Authorization": f"Bearer {created.json()['key']}"}
    await http.put(f"/v1/admin/keys/{key_id}/limits", json={"max_active_jobs": 5}, headers=ADMIN)
    job = (await submit(http, old)).json()
    rotated = await http.post(f"/v1/admin/keys/{key_id}/rotate", headers=ADMIN)
    assert rotated.status_code == 200 and rotated.json()["id"] == key_id
    assert rotated.json()["limits"]["max_active_jobs"] == 5
    new = {"Authorization": f"Bearer {rotated.json()['key']}"}
    assert (await http.get("/v1/jobs", headers=old)).status_code == 401
    mine = (await http.get("/v1/jobs", headers=new)).json()["data"]
    assert [j["id"] for j in mine] == [job["id"]]
    missing = await http.post("/v1/admin/keys/key_nope/rotate", headers=ADMIN)
    assert missing.status_code == 404
