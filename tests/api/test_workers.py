"""The worker side over HTTP: long-poll, lease reports, fencing, the fleet view."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from garage.broker.store import Store

from ..support import eventually
from .conftest import ADMIN, CHAT, new_key, poll_body


async def lease_one(http, worker, **kw) -> dict:
    reply = await http.post("/v1/worker/poll", json=poll_body(**kw), headers=worker)
    [lease] = reply.json()["leases"]
    return lease


async def test_parked_poll_gets_a_job_the_moment_it_is_queued(
    http: httpx.AsyncClient, user, worker
) -> None:
    polling = asyncio.create_task(
        http.post("/v1/worker/poll", json=poll_body(wait_s=20), headers=worker)
    )
    await asyncio.sleep(0.2)  # the poll is parked (nothing to claim yet)
    assert not polling.done()
    submitted_at = time.monotonic()
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    reply = await asyncio.wait_for(polling, 10)
    handed_out_s = time.monotonic() - submitted_at
    assert [lease["job_id"] for lease in reply.json()["leases"]] == [job["id"]]
    assert handed_out_s < 5  # far under the 20 s wait: woken, not timed out


@pytest.mark.parametrize(("lane", "claims_after"), [("batch", 2), ("interactive", 1)])
async def test_an_enqueue_wakes_one_parked_poll(
    http: httpx.AsyncClient, user, worker, broker, lane: str, claims_after: int
) -> None:
    """A batch job wakes one parked poll, which claims it; an interactive job submitted to
    the broker holding the parked poll is handed to it directly, with no claim at all.
    Once the first poll's claim found nothing, the others park without claiming."""
    leases = broker.app.state.broker.store.leases
    calls = 0
    original = leases.claim

    async def counting_claim(**kw):
        nonlocal calls
        calls += 1
        return await original(**kw)

    notifier = broker.app.state.broker.notifier

    def start_poll(i: int) -> asyncio.Task:
        body = poll_body(wait_s=3, worker_id=f"w{i}")
        return asyncio.create_task(http.post("/v1/worker/poll", json=body, headers=worker))

    async def parked(count: int) -> bool:
        return len(notifier.polls) == count and notifier.polls.waiting("m") > 0

    leases.claim = counting_claim
    try:
        notifier.hints.woken("m")  # as after a wake: whatever an earlier test left is unknown
        polls = [start_poll(0)]
        await eventually(lambda: parked(1), what="the first poll to park")
        polls += [start_poll(i) for i in range(1, 4)]
        await eventually(lambda: parked(4), what="four parked polls")
        assert calls == 1  # the first found nothing; the broker knows until a wake
        job = (await http.post("/v1/jobs", json={**CHAT, "lane": lane}, headers=user)).json()
        done, pending = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
        [lease] = done.pop().result().json()["leases"]
        assert lease["job_id"] == job["id"] and lease["attempt"] == 1
        assert len(done) == 0 and calls == claims_after  # the other three stayed asleep
        leased = (await http.get(f"/v1/jobs/{job['id']}", headers=user)).json()
        assert leased["status"] == "running" and leased["attempt"] == 1
        replies = await asyncio.gather(*pending)
        assert all(r.json()["leases"] == [] for r in replies)
    finally:
        leases.claim = original


async def park_a_poll(http: httpx.AsyncClient, worker, broker) -> asyncio.Task:
    """A poll for model m, returned once it is parked with nothing claimed (so an
    interactive submit is handed to it directly)."""
    polls = broker.app.state.broker.notifier.polls
    polling = asyncio.create_task(
        http.post("/v1/worker/poll", json=poll_body(wait_s=10), headers=worker)
    )

    async def parked() -> bool:
        return polls.waiting("m") > 0

    await eventually(parked, what="the poll to park")
    return polling


async def test_a_handoff_whose_script_fails_leaves_a_lease_that_finds_no_job(
    http: httpx.AsyncClient, user, worker, broker, redis
) -> None:
    """The parked poll gets its lease once submit.lua is written, before its reply; when
    the script fails, the submitter gets the error and the worker's report finds no job."""
    # A key without quotas: one with quotas is handed a job before the script's reply
    # only once its room under them is known (test_quotas.py).
    user = await new_key(http, "user", "alice", requests_per_minute=0, max_active_jobs=0)
    polling = await park_a_poll(http, worker, broker)
    jobs = broker.app.state.broker.store.jobs
    original = jobs.submit

    def failing_submit(*args, **kw):
        pending = original(*args, **kw)
        pending._reply = _raising(ConnectionError("redis went away"), pending._reply)
        return pending

    jobs.submit = failing_submit
    try:
        submitted = await http.post("/v1/jobs", json=CHAT, headers=user)
    finally:
        jobs.submit = original
    assert submitted.status_code == 503  # the store went away: retry shortly
    assert submitted.json()["error"]["code"] == "unavailable"
    [lease] = (await asyncio.wait_for(polling, 10)).json()["leases"]
    await redis.delete(f"garage:job:{lease['job_id']}")  # as if the script had not run
    report = await http.post(
        f"/v1/worker/jobs/{lease['job_id']}/report",
        json={"lease_token": lease["lease_token"], "text": "x"},
        headers=worker,
    )
    assert report.status_code == 404


async def _raising(error: Exception, reply) -> None:
    await reply
    raise error


async def test_a_handed_off_job_is_found_by_a_report_sent_before_its_script_answered(
    http: httpx.AsyncClient, user, worker, broker, redis
) -> None:
    """Script calls run in the order this broker makes them, so the poll answers as soon
    as submit.lua is written: here its reply is held back 0.3 s, the worker completes the
    moment it has the lease, and the completion (run after the submit) is accepted."""
    # A key without quotas: one with quotas is handed a job before the script's reply
    # only once its room under them is known (test_quotas.py).
    user = await new_key(http, "user", "alice", requests_per_minute=0, max_active_jobs=0)
    polling = await park_a_poll(http, worker, broker)
    jobs = broker.app.state.broker.store.jobs
    assert jobs.in_order
    original = jobs.submit

    def slow_submit(*args, **kw):
        pending = original(*args, **kw)
        pending._reply = _held_back(pending._reply)
        return pending

    async def work() -> tuple[float, httpx.Response]:
        [lease] = (await polling).json()["leases"]
        leased_at = time.monotonic()
        completed = await http.post(
            f"/v1/worker/jobs/{lease['job_id']}/complete",
            json={"lease_token": lease["lease_token"], "result": {"ok": True}},
            headers=worker,
        )
        return leased_at, completed

    jobs.submit = slow_submit
    try:
        worker_done = asyncio.create_task(work())
        submitted = await http.post("/v1/jobs", json=CHAT, headers={**user, "Prefer": "wait=5"})
        answered_at = time.monotonic()
        leased_at, completed = await worker_done
    finally:
        jobs.submit = original
    assert leased_at < answered_at - 0.2  # the lease came before the script's reply
    assert completed.status_code == 200, completed.text
    assert submitted.json()["status"] == "succeeded"


async def _held_back(reply):
    value = await reply
    await asyncio.sleep(0.3)
    return value


async def test_an_idempotent_submit_of_an_earlier_job_leases_nothing_real(
    http: httpx.AsyncClient, user, worker, broker
) -> None:
    """A submit whose Idempotency-Key names an earlier job returns that job. The parked
    poll it reserved was answered as the script was written, with a lease on a job that
    is never created: the worker's report on it gets 404, and the earlier job is as it was."""
    headers = {**user, "Idempotency-Key": "same"}
    first = await http.post("/v1/jobs", json=CHAT, headers=headers)
    assert first.status_code == 201
    lease = await lease_one(http, worker)  # a poll claims the first job
    assert lease["job_id"] == first.json()["id"]
    polling = await park_a_poll(http, worker, broker)
    again = await http.post("/v1/jobs", json=CHAT, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    [phantom] = (await asyncio.wait_for(polling, 10)).json()["leases"]
    assert phantom["job_id"] != first.json()["id"]
    report = await http.post(
        f"/v1/worker/jobs/{phantom['job_id']}/report",
        json={"lease_token": phantom["lease_token"]},
        headers=worker,
    )
    assert report.status_code == 404
    assert (await http.get(f"/v1/jobs/{first.json()['id']}", headers=user)).json()[
        "status"
    ] == "running"


async def test_poll_hands_out_several_jobs_interactive_first(
    http: httpx.AsyncClient, user, worker
) -> None:
    batch = (await http.post("/v1/jobs", json={**CHAT, "lane": "batch"}, headers=user)).json()
    inter = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    reply = await http.post("/v1/worker/poll", json=poll_body(slots=5), headers=worker)
    assert [lease["job_id"] for lease in reply.json()["leases"]] == [inter["id"], batch["id"]]


async def test_stale_token_gets_409_and_changes_nothing(
    http: httpx.AsyncClient, user, worker, broker, store: Store
) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    old = await lease_one(http, worker)
    broker.clock.advance(31)
    await store.leases.reap()
    new = await lease_one(http, worker, worker_id="w2")
    before = (await http.get(f"/v1/jobs/{job['id']}", headers=user)).json()
    for verb, body in (
        ("report", {"text": "spliced"}),
        ("complete", {"result": {"x": 1}}),
        ("fail", {"error": {"message": "boom"}}),
    ):
        reply = await http.post(
            f"/v1/worker/jobs/{job['id']}/{verb}",
            json={"lease_token": old["lease_token"], **body},
            headers=worker,
        )
        assert reply.status_code == 409 and reply.json()["error"]["code"] == "lease_lost"
    assert (await http.get(f"/v1/jobs/{job['id']}", headers=user)).json() == before
    ok = await http.post(
        f"/v1/worker/jobs/{job['id']}/report",
        json={"lease_token": new["lease_token"]},
        headers=worker,
    )
    assert ok.status_code == 200


async def test_reports_sent_again_change_nothing_twice(
    http: httpx.AsyncClient, user, worker, redis
) -> None:
    """After a broken connection a worker sends its report again: numbered reports add
    their text once, and a final report already taken is answered as taken."""
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    lease = await lease_one(http, worker)
    path = f"/v1/worker/jobs/{job['id']}"
    token = lease["lease_token"]
    for body in ({"seq": 1, "text": "a"}, {"seq": 1, "text": "a"}, {"seq": 2, "text": "b"},
                 {"seq": 1, "text": "a"}):  # fmt: skip
        reply = await http.post(
            f"{path}/report", json={"lease_token": token, **body}, headers=worker
        )
        assert reply.json() == {"cancelled": False, "accepted": True}
    for _ in range(2):
        done = await http.post(
            f"{path}/complete", json={"lease_token": token, "result": {"n": 1}}, headers=worker
        )
        assert done.status_code == 200 and done.json()["cancelled"] is False
    events = await redis.xrange(f"garage:job:{job['id']}:events")
    texts = [e["e"] for _, e in events if '"delta"' in e["e"]]
    assert len(texts) == 2 and '"a"' in texts[0] and '"b"' in texts[1]
    assert sum('"done"' in e["e"] for _, e in events) == 1


async def test_a_worker_reports_only_on_its_own_leases(
    http: httpx.AsyncClient, user, worker
) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    lease = await lease_one(http, worker)
    other_rig = await new_key(http, "worker", "rig-2")
    reply = await http.post(
        f"/v1/worker/jobs/{job['id']}/complete",
        json={"lease_token": lease["lease_token"], "result": {}},
        headers=other_rig,
    )
    assert reply.status_code == 409
    as_user = await http.post(
        f"/v1/worker/jobs/{job['id']}/complete",
        json={"lease_token": lease["lease_token"], "result": {}},
        headers=user,
    )
    assert as_user.status_code == 403


async def test_retryable_fail_requeues_and_restarts_the_stream(
    http: httpx.AsyncClient, user, worker
) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    lease = await lease_one(http, worker)
    reply = await http.post(
        f"/v1/worker/jobs/{job['id']}/fail",
        json={
            "lease_token": lease["lease_token"],
            "error": {"message": "backend went away"},
            "retryable": True,
        },
        headers=worker,
    )
    assert reply.json() == {"cancelled": False, "accepted": True}
    again = await lease_one(http, worker)
    assert again["attempt"] == 2


async def test_fleet_view_shows_polling_workers(http: httpx.AsyncClient, user, worker) -> None:
    body = {
        **poll_body(models=("llama3", "qwen"), slots=2),
        "name": "garage-3090",
        "gpus": [{"index": 0, "uuid": "GPU-1", "name": "RTX 3090", "temperature_c": 61}],
    }
    await http.post("/v1/worker/poll", json=body, headers=worker)
    fleet = (await http.get("/v1/workers", headers=user)).json()["data"]
    assert [w["name"] for w in fleet] == ["garage-3090"]
    assert fleet[0]["models"] == ["llama3", "qwen"]
    assert fleet[0]["gpus"][0]["temperature_c"] == 61


async def test_critical_worker_gets_no_work(http: httpx.AsyncClient, user, worker) -> None:
    await http.post("/v1/jobs", json=CHAT, headers=user)
    body = {**poll_body(), "health": {"state": "critical", "reasons": ["GPU 0 at 95°C"]}}
    reply = await http.post("/v1/worker/poll", json=body, headers=worker)
    assert reply.json() == {"leases": []}


async def test_unserved_interactive_model_fails_fast_unless_told_to_wait(
    http: httpx.AsyncClient, user, worker, redis
) -> None:
    body = {"model": "llama3", "request": {"messages": [{"role": "user", "content": "hi"}]}}
    keys_before = sorted(await redis.keys("garage:job:*"))
    refused = await http.post("/v1/jobs", json=body, headers=user)
    assert refused.status_code == 503
    assert refused.json()["error"] == {
        "message": "no live worker serves model 'llama3' (GET /v1/models lists the models "
        "served now); set wait_for_worker to queue the job anyway, or use the batch lane",
        "type": "service_unavailable",
        "param": "model",
        "code": "model_not_served",
    }
    assert sorted(await redis.keys("garage:job:*")) == keys_before
    assert (
        await http.post("/v1/jobs", json={**body, "lane": "batch"}, headers=user)
    ).status_code == 201
    assert (
        await http.post("/v1/jobs", json={**body, "wait_for_worker": True}, headers=user)
    ).status_code == 201
    await http.post("/v1/worker/poll", json=poll_body(models=("llama3",), slots=0), headers=worker)
    assert (await http.post("/v1/jobs", json=body, headers=user)).status_code == 201


async def test_models_lists_what_live_workers_serve(http: httpx.AsyncClient, user, worker) -> None:
    assert (await http.get("/v1/models", headers=user)).json() == {"object": "list", "data": []}
    for i, models in enumerate((("llama3", "qwen"), ("llama3",))):
        await http.post(
            "/v1/worker/poll",
            json=poll_body(models=models, slots=0, worker_id=f"w{i}"),
            headers=worker,
        )
    hot = {
        **poll_body(models=("mixtral",), slots=0, worker_id="hot"),
        "health": {"state": "critical", "reasons": ["too hot"]},
    }
    await http.post("/v1/worker/poll", json=hot, headers=worker)
    listed = (await http.get("/v1/models", headers=user)).json()["data"]
    assert [(m["id"], m["workers"], m["object"]) for m in listed] == [
        ("llama3", 2, "model"),
        ("qwen", 1, "model"),
    ]


def fleet_poll(worker_id: str, free: int, wait_s: float = 0) -> dict:
    return {**poll_body(worker_id=worker_id, wait_s=wait_s), "slots_free": free, "slots_total": 4}


async def fleet_entry(http: httpx.AsyncClient, user, worker_id: str) -> dict | None:
    fleet = (await http.get("/v1/workers", headers=user)).json()["data"]
    return next((w for w in fleet if w["worker_id"] == worker_id), None)


async def test_fleet_view_catches_up_with_a_worker_that_went_idle(
    http: httpx.AsyncClient, user, worker, broker, redis
) -> None:
    """A poll that changes only the free slots within a second of the last write is not
    written at once (a busy worker re-polls after every job). When it parks instead of
    leasing, it is written about a second after that write, scored at the poll itself so
    the worker's liveness is counted as before (issue 15 point 5: `1/4 busy`, nothing
    running)."""
    notifier = broker.app.state.broker.notifier
    notifier.hints.woken("m")  # as after a wake: whatever an earlier test left is unknown
    await http.post("/v1/worker/poll", json=fleet_poll("went-idle", free=1), headers=worker)
    assert (await fleet_entry(http, user, "went-idle"))["running"] == 3
    idle_at_ms = broker.clock()
    idle = fleet_poll("went-idle", free=4, wait_s=8)
    parked = asyncio.create_task(http.post("/v1/worker/poll", json=idle, headers=worker))
    try:

        async def caught_up() -> bool:
            entry = await fleet_entry(http, user, "went-idle")
            return entry is not None and entry["slots_free"] == 4 and entry["running"] == 0

        async def is_parked() -> bool:
            return len(notifier.polls) == 1

        await eventually(is_parked, what="the idle poll to park")
        broker.clock.advance(5)  # the entry must count from the poll, not from its write
        await eventually(caught_up, timeout_s=3, what="the fleet view to show 4/4 free")
        assert not parked.done()  # written while the poll is still parked
        assert await redis.zscore("garage:workers", "went-idle") == idle_at_ms
        alive_ms = broker.store.fleet.alive_ms
        assert 0 < await redis.pttl("garage:worker:went-idle") <= alive_ms - 5000
    finally:
        parked.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await parked


async def test_fleet_view_catches_up_with_a_worker_that_filled_up(
    http: httpx.AsyncClient, user, worker
) -> None:
    """The same for a full worker's poll, which waits without parking."""
    await http.post("/v1/worker/poll", json=fleet_poll("filled-up", free=4), headers=worker)
    full = fleet_poll("filled-up", free=0, wait_s=8)
    waiting = asyncio.create_task(http.post("/v1/worker/poll", json=full, headers=worker))
    try:

        async def caught_up() -> bool:
            entry = await fleet_entry(http, user, "filled-up")
            return entry is not None and entry["slots_free"] == 0 and entry["running"] == 4

        await eventually(caught_up, timeout_s=3, what="the fleet view to show 0/4 free")
        assert not waiting.done()
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting


async def test_a_poll_whose_worker_went_away_is_not_written_late(
    http: httpx.AsyncClient, user, worker, broker
) -> None:
    """A deferred poll whose client disconnects before it is due writes nothing after."""
    notifier = broker.app.state.broker.notifier
    notifier.hints.woken("m")
    await http.post("/v1/worker/poll", json=fleet_poll("went-away", free=1), headers=worker)
    written_at = time.monotonic()
    idle = fleet_poll("went-away", free=4, wait_s=8)
    parked = asyncio.create_task(http.post("/v1/worker/poll", json=idle, headers=worker))

    async def polls(count: int) -> bool:
        return len(notifier.polls) == count

    await eventually(lambda: polls(1), what="the idle poll to park")
    parked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await parked
    await eventually(lambda: polls(0), what="the broker to see the client go")
    assert time.monotonic() - written_at < 1  # it left before its write was due
    await asyncio.sleep(1.5)
    assert (await fleet_entry(http, user, "went-away"))["running"] == 3


async def test_a_worker_id_belongs_to_the_key_that_polled_until_it_goes_quiet(
    http: httpx.AsyncClient, worker, broker, clock
) -> None:
    other = await new_key(http, "worker", "rig-2")
    assert (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).status_code == 200
    taken = await http.post("/v1/worker/poll", json=poll_body(), headers=other)
    assert taken.status_code == 409 and "another worker key" in taken.json()["error"]["message"]
    heartbeat = {k: v for k, v in poll_body().items() if k != "wait_s"}
    assert (
        await http.post("/v1/worker/heartbeat", json=heartbeat, headers=other)
    ).status_code == 409
    [entry] = (await http.get("/v1/workers", headers=ADMIN)).json()["data"]
    assert entry["name"] == "w1" and entry["owner"] != other  # the first key's, untouched
    clock.advance(broker.app.state.broker.settings.worker_alive_s + 1)
    assert (await http.post("/v1/worker/poll", json=poll_body(), headers=other)).status_code == 200


async def test_a_worker_key_has_at_most_its_share_of_live_workers(
    http: httpx.AsyncClient, worker, broker
) -> None:
    broker.app.state.broker.store.fleet.max_per_key = 2
    try:
        for worker_id in ("a", "b"):
            body = poll_body(worker_id=worker_id)
            assert (
                await http.post("/v1/worker/poll", json=body, headers=worker)
            ).status_code == 200
        third = await http.post("/v1/worker/poll", json=poll_body(worker_id="c"), headers=worker)
        assert third.status_code == 429 and "2 live workers" in third.json()["error"]["message"]
        again = await http.post("/v1/worker/poll", json=poll_body(worker_id="a"), headers=worker)
        assert again.status_code == 200  # a worker it has polls on
    finally:
        broker.app.state.broker.store.fleet.max_per_key = 64


async def test_a_worker_key_limited_to_some_models_serves_those_alone(
    http: httpx.AsyncClient, user
) -> None:
    created = await http.post("/v1/admin/keys", json={"role": "worker", "name": "r"}, headers=ADMIN)
    key_id, rig = created.json()["id"], {"Authorization": f"Bearer {created.json()['key']}"}
    put = await http.put(f"/v1/admin/keys/{key_id}/limits", json={"models": ["m"]}, headers=ADMIN)
    assert put.json()["limits"]["models"] == ["m"]
    other = (await http.post("/v1/jobs", json={**CHAT, "model": "x"}, headers=user)).json()
    mine = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    poll = await http.post(
        "/v1/worker/poll", json=poll_body(models=("x", "m"), slots=2), headers=rig
    )
    assert [lease["job_id"] for lease in poll.json()["leases"]] == [mine["id"]]
    [entry] = (await http.get("/v1/workers", headers=ADMIN)).json()["data"]
    assert entry["models"] == ["m"]
    assert (await http.get(f"/v1/jobs/{other['id']}", headers=user)).json()["status"] == "queued"
