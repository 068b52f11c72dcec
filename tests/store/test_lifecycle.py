"""The job lifecycle on a real redis-server: every transition is one Lua script."""

from __future__ import annotations

import json

import pytest

from garage.broker.store import Store
from garage.broker.store.leases import ReportOutcome
from garage.contract import JobCreate, JobError, JobStatus, Lane, Usage

from ..support import ManualClock

pytestmark = pytest.mark.asyncio


def chat(model: str = "m", lane: Lane = Lane.interactive, **kw) -> JobCreate:
    return JobCreate(
        model=model, lane=lane, request={"messages": [{"role": "user", "content": "hi"}]}, **kw
    )


async def submit(store: Store, owner: str = "u1", **kw) -> str:
    return (await store.jobs.submit(owner, chat(**kw))).job_id


async def claim(store: Store, models=("m",), slots=1, worker="w1", owner="wk"):
    return await store.leases.claim(
        worker_id=worker, lease_owner=owner, models=list(models), slots=slots
    )


async def event_types(store: Store, job_id: str) -> list[str]:
    return [json.loads(e.data)["type"] for e in await store.events.read(job_id, after=None)]


async def test_submit_lease_complete(store: Store) -> None:
    job_id = await submit(store)
    job = await store.jobs.get(job_id)
    assert job.status == JobStatus.queued and job.attempt == 0
    assert job.request["model"] == "m"

    [lease] = await claim(store)
    assert lease.job_id == job_id and lease.attempt == 1
    assert (await store.jobs.get(job_id)).status == JobStatus.running

    assert (
        await store.leases.report(job_id, token=lease.lease_token, lease_owner="wk", text="Hel")
        == ReportOutcome.ok
    )
    outcome = await store.leases.complete(
        job_id,
        token=lease.lease_token,
        lease_owner="wk",
        result={"choices": [{"message": {"content": "Hello"}}]},
        usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        text="lo",
    )
    assert outcome == ReportOutcome.ok
    job = await store.jobs.get(job_id)
    assert job.status == JobStatus.succeeded
    assert job.result["choices"][0]["message"]["content"] == "Hello"
    assert job.usage.total_tokens == 3
    assert job.timings.run_ms == 0 and job.timings.total_ms == 0
    events = [json.loads(e.data) for e in await store.events.read(job_id, after=None)]
    assert [e["type"] for e in events] == ["status", "status", "delta", "delta", "done"]
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "Hello"


async def test_interactive_before_batch_and_fifo(store: Store, clock: ManualClock) -> None:
    b1 = await submit(store, lane=Lane.batch)
    clock.advance(0.001)
    i1 = await submit(store)
    clock.advance(0.001)
    i2 = await submit(store, model="other")
    clock.advance(0.001)
    b2 = await submit(store, lane=Lane.batch)
    leases = await claim(store, models=("m", "other"), slots=10)
    assert [lease.job_id for lease in leases] == [i1, i2, b1, b2]


async def test_routing_only_to_workers_serving_the_model(store: Store) -> None:
    await submit(store, model="llama")
    assert await claim(store, models=("qwen",)) == []
    assert len(await claim(store, models=("llama",))) == 1


async def test_stale_token_changes_nothing(store: Store, clock: ManualClock) -> None:
    job_id = await submit(store)
    [first] = await claim(store)
    clock.advance(31)
    assert (await store.leases.reap()).requeued == 1
    [second] = await claim(store, worker="w2")
    assert second.attempt == 2
    before = await store.jobs.get(job_id)
    for call in (
        store.leases.report(job_id, token=first.lease_token, lease_owner="wk", text="x"),
        store.leases.complete(job_id, token=first.lease_token, lease_owner="wk", result={}),
        store.leases.fail(
            job_id, token=first.lease_token, lease_owner="wk", error=JobError(message="e")
        ),
    ):
        assert await call == ReportOutcome.stale
    assert await store.jobs.get(job_id) == before
    # the right token from the wrong key is stale too
    assert (
        await store.leases.report(job_id, token=second.lease_token, lease_owner="other-key")
        == ReportOutcome.stale
    )


async def test_requeue_goes_to_the_front_with_restart(store: Store, clock: ManualClock) -> None:
    first = await submit(store)
    clock.advance(0.001)
    second = await submit(store)
    [lease] = await claim(store)
    assert lease.job_id == first
    clock.advance(31)
    await store.leases.reap()
    [again] = await claim(store)
    assert again.job_id == first and again.attempt == 2
    assert (await claim(store))[0].job_id == second
    assert "restart" in await event_types(store, first)


async def test_attempts_exhausted_fails(store: Store, clock: ManualClock) -> None:
    job_id = await submit(store, max_attempts=2)
    for _ in range(2):
        assert len(await claim(store)) == 1
        clock.advance(31)
        await store.leases.reap()
    job = await store.jobs.get(job_id)
    assert job.status == JobStatus.failed and job.error.code == "attempts_exhausted"
    assert await claim(store) == []


async def test_renewal_keeps_the_lease(store: Store, clock: ManualClock) -> None:
    job_id = await submit(store)
    [lease] = await claim(store)
    for _ in range(5):
        clock.advance(20)
        assert (
            await store.leases.report(job_id, token=lease.lease_token, lease_owner="wk")
            == ReportOutcome.ok
        )
        assert (await store.leases.reap()).requeued == 0
    assert (await store.jobs.get(job_id)).status == JobStatus.running


async def test_retryable_failure_requeues_then_fails(store: Store) -> None:
    job_id = await submit(store, max_attempts=2)
    err = JobError(message="backend down", code="backend_unavailable")
    [lease] = await claim(store)
    assert (
        await store.leases.fail(
            job_id, token=lease.lease_token, lease_owner="wk", error=err, retryable=True
        )
        == ReportOutcome.requeued
    )
    [lease] = await claim(store)
    assert (
        await store.leases.fail(
            job_id, token=lease.lease_token, lease_owner="wk", error=err, retryable=True
        )
        == ReportOutcome.failed
    )
    job = await store.jobs.get(job_id)
    assert job.status == JobStatus.failed and job.error.message == "backend down"


async def test_non_retryable_failure_fails_at_once(store: Store) -> None:
    job_id = await submit(store)
    [lease] = await claim(store)
    err = JobError(message="model not found", type="invalid_request_error")
    assert (
        await store.leases.fail(job_id, token=lease.lease_token, lease_owner="wk", error=err)
        == ReportOutcome.failed
    )
    assert (await store.jobs.get(job_id)).attempt == 1


async def test_handback_uses_no_attempt(store: Store) -> None:
    job_id = await submit(store, max_attempts=1)
    for _ in range(3):
        [lease] = await claim(store)
        assert (
            await store.leases.fail(
                job_id,
                token=lease.lease_token,
                lease_owner="wk",
                error=JobError(message="draining"),
                handback=True,
            )
            == ReportOutcome.requeued
        )
    [lease] = await claim(store)
    assert lease.attempt == 4
    assert (
        await store.leases.complete(
            job_id, token=lease.lease_token, lease_owner="wk", result={"ok": 1}
        )
        == ReportOutcome.ok
    )


async def test_cancel_queued(store: Store) -> None:
    job_id = await submit(store)
    assert (await store.jobs.cancel(job_id)).status == JobStatus.cancelled
    assert await claim(store) == []
    assert (await store.jobs.get(job_id)).status == JobStatus.cancelled


async def test_cancel_running_reaches_the_worker(store: Store) -> None:
    job_id = await submit(store)
    [lease] = await claim(store)
    assert (await store.jobs.cancel(job_id)).status == JobStatus.cancelled
    assert (
        await store.leases.report(job_id, token=lease.lease_token, lease_owner="wk", text="late")
        == ReportOutcome.ended
    )
    assert (
        await store.leases.complete(job_id, token=lease.lease_token, lease_owner="wk", result={})
        == ReportOutcome.ended
    )
    job = await store.jobs.get(job_id)
    assert job.status == JobStatus.cancelled and job.result is None
    assert "delta" not in await event_types(store, job_id)


async def test_terminal_states_never_change(store: Store, clock: ManualClock) -> None:
    job_id = await submit(store)
    [lease] = await claim(store)
    await store.leases.complete(job_id, token=lease.lease_token, lease_owner="wk", result={})
    before = await store.jobs.get(job_id)
    assert (await store.jobs.cancel(job_id)).status == JobStatus.succeeded
    clock.advance(3600 * 2 - 10)
    await store.leases.reap()
    assert (
        await store.leases.fail(
            job_id, token=lease.lease_token, lease_owner="wk", error=JobError(message="x")
        )
        == ReportOutcome.ended
    )
    assert await store.jobs.get(job_id) == before


async def test_idempotent_submit(store: Store) -> None:
    first = await store.jobs.submit("u1", chat(), idempotency_key="k1")
    again = await store.jobs.submit("u1", chat(), idempotency_key="k1")
    other_owner = await store.jobs.submit("u2", chat(), idempotency_key="k1")
    assert first.created and not again.created and again.job_id == first.job_id
    assert other_owner.created and other_owner.job_id != first.job_id
    assert len(await claim(store, slots=10)) == 2


async def test_start_deadline_expires(store: Store, clock: ManualClock) -> None:
    by_reaper = await submit(store, start_timeout_s=5)
    clock.advance(6)
    assert (await store.leases.reap()).expired == 1
    assert (await store.jobs.get(by_reaper)).status == JobStatus.expired
    by_claim = await submit(store, start_timeout_s=5)
    clock.advance(6)
    assert await claim(store) == []  # expired on the way, not handed out
    job = await store.jobs.get(by_claim)
    assert job.status == JobStatus.expired and job.error.code == "start_deadline_exceeded"


async def test_run_deadline_fails_a_running_job(store: Store, clock: ManualClock) -> None:
    job_id = await submit(store, timeout_s=10)
    [lease] = await claim(store)
    clock.advance(11)
    assert (
        await store.leases.report(job_id, token=lease.lease_token, lease_owner="wk")
        == ReportOutcome.ended
    )
    assert (await store.jobs.get(job_id)).error.code == "deadline_exceeded"


async def test_retention_expires_finished_jobs(store: Store, redis) -> None:
    job_id = (await store.jobs.submit("u1", chat(), idempotency_key="k")).job_id
    [lease] = await claim(store)
    await store.leases.complete(job_id, token=lease.lease_token, lease_owner="wk", result={})
    for key in (f"garage:job:{job_id}", f"garage:job:{job_id}:events", "garage:idem:u1:k"):
        assert 0 < await redis.pttl(key) <= 3_600_000


async def test_list_is_per_owner_newest_first(store: Store, clock: ManualClock) -> None:
    ids = []
    for _ in range(5):
        ids.append(await submit(store, owner="u1"))
        clock.advance(0.01)
    await submit(store, owner="u2")
    page, more = await store.jobs.list("u1", limit=3)
    assert [j.id for j in page] == ids[::-1][:3] and more
    rest, more = await store.jobs.list("u1", limit=3, before=page[-1].id)
    assert [j.id for j in rest] == ids[::-1][3:] and not more
    everyone, _ = await store.jobs.list(None, limit=10)
    assert len(everyone) == 6


async def test_paging_loses_no_job_made_in_the_same_millisecond(store: Store) -> None:
    ids = {await submit(store, owner="u1") for _ in range(10)}  # the clock stands still
    seen: list[str] = []
    before = None
    while True:
        page, more = await store.jobs.list("u1", limit=3, before=before)
        seen += [job.id for job in page]
        if not more:
            break
        before = page[-1].id
    assert sorted(seen) == sorted(ids)  # each once


async def test_complete_can_return_the_finished_job(store: Store, clock: ManualClock) -> None:
    job_id = await submit(store)
    [lease] = await claim(store)
    clock.advance(0.25)
    outcome, job = await store.leases.complete_reading_job(
        job_id, token=lease.lease_token, lease_owner="wk", result={"ok": True}
    )
    assert outcome == ReportOutcome.ok
    assert job == await store.jobs.get(job_id)  # what a read-back would have found
    assert job.status == JobStatus.succeeded and job.result == {"ok": True}
    assert job.timings.run_ms == 250
    again, nothing = await store.leases.complete_reading_job(
        job_id, token=lease.lease_token, lease_owner="wk", result={"ok": False}
    )
    # sent again: this lease's result stands, the second is not taken, nothing is read
    assert again == ReportOutcome.repeated and nothing is None
    assert (await store.jobs.get(job_id)).result == {"ok": True}


async def test_an_end_is_published_only_for_another_watching_broker(
    store: Store, redis, clock: ManualClock
) -> None:
    """`garage:ended` carries an end only to brokers that need it: one that watches the job
    and did not end it itself."""
    pubsub = redis.pubsub()
    await pubsub.subscribe("garage:ended")
    assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"

    async def complete(job_id: str, ended_by: str) -> None:
        [lease] = await claim(store)
        assert lease.job_id == job_id
        await store.leases.complete(
            job_id, token=lease.lease_token, lease_owner="wk", result={}, ended_by=ended_by
        )

    nobody = await submit(store)  # a batch job, say: nobody waits
    await complete(nobody, "p1")
    here = (await store.jobs.submit("u1", chat(), watcher="p1")).job_id
    await complete(here, "p1")  # ended where it is waited for: told in-process
    elsewhere = (await store.jobs.submit("u1", chat(), watcher="p1")).job_id
    await complete(elsewhere, "p2")
    both = (await store.jobs.submit("u1", chat(), watcher="p1")).job_id
    assert await store.jobs.watch(both, "p2") == JobStatus.queued
    await complete(both, "p1")
    reaped = await submit(store, start_timeout_s=1)
    assert await store.jobs.watch(reaped, "p1") == JobStatus.queued
    clock.advance(2)
    await store.leases.reap()  # no broker ends it: anyone watching is told

    published = []
    while (message := await pubsub.get_message(timeout=0.5)) is not None:
        published.append(message["data"])
    assert published == [elsewhere, both, reaped]
    assert await store.jobs.watch("job_nope", "p1") is None
    await pubsub.aclose()
