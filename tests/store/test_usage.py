"""Usage per user key on a real redis-server: the scripts that end a job charge its owner's
totals by UTC day and model, once, and only what the lease holder reported."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from garage.broker.store import Store, keys
from garage.broker.store.leases import ReportOutcome
from garage.broker.store.usage import RETENTION_DAYS, UsageEntry
from garage.contract import JobCreate, JobError, JobStatus, Lane, Lease, Usage

from ..support import ManualClock

pytestmark = pytest.mark.asyncio

WORKER = "wk"  # the lease owner (the worker's key id) in every claim here


def usage(prompt: int, completion: int, *, estimated: bool = False) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        estimated=estimated,
    )


async def start(store: Store, owner: str = "alice", model: str = "m", **kw) -> Lease:
    """A job of `owner`'s, submitted and leased."""
    spec = JobCreate(model=model, request={"messages": [{"role": "user", "content": "hi"}]}, **kw)
    job_id = (await store.jobs.submit(owner, spec)).job_id
    [lease] = await store.leases.claim(worker_id="w1", lease_owner=WORKER, models=[model], slots=1)
    assert lease.job_id == job_id
    return lease


async def complete(store: Store, lease: Lease, used: Usage | None) -> ReportOutcome:
    return await store.leases.complete(
        lease.job_id, token=lease.lease_token, lease_owner=WORKER, result={"ok": 1}, usage=used
    )


async def fail(store: Store, lease: Lease, used: Usage | None, **kw) -> ReportOutcome:
    return await store.leases.fail(
        lease.job_id,
        token=lease.lease_token,
        lease_owner=WORKER,
        error=JobError(message="boom"),
        usage=used,
        **kw,
    )


def day_of(clock: ManualClock) -> date:
    return datetime.fromtimestamp(clock.now_ms / 1000, UTC).date()


async def totals(store: Store, day: date, owner: str | None = None) -> dict[tuple, tuple]:
    """(owner, model) -> (jobs, prompt, completion, estimated) on `day`."""
    entries = await store.usage.entries(start=day, end=day, owner=owner)
    return {
        (e.owner, e.model): (e.jobs, e.prompt_tokens, e.completion_tokens, e.estimated_tokens)
        for e in entries
    }


async def test_a_mix_of_jobs_adds_up_per_owner_day_and_model(
    store: Store, clock: ManualClock
) -> None:
    today = day_of(clock)
    # Counted: succeeded, exact and estimated usage; failed after running.
    await complete(store, await start(store), usage(10, 20))
    await complete(store, await start(store), usage(3, 4, estimated=True))
    await fail(store, await start(store), usage(5, 1))
    # A handed-back attempt's tokens add to the job's, charged when it ends.
    handed = await start(store, model="m2")
    assert await fail(store, handed, usage(7, 2), handback=True) is ReportOutcome.requeued
    [again] = await store.leases.claim(worker_id="w1", lease_owner=WORKER, models=["m2"], slots=1)
    await complete(store, again, usage(7, 9))
    # Not counted: cancelled while queued, expired before it started.
    queued = await store.jobs.submit(
        "alice", JobCreate(model="m", request={"prompt": "x"}, kind="completion")
    )
    await store.jobs.cancel(queued.job_id)
    late = await store.jobs.submit(
        "alice", JobCreate(model="m", request={"prompt": "x"}, kind="completion",
                           start_timeout_s=1, lane=Lane.batch),
    )  # fmt: skip
    clock.advance(2)
    await store.leases.reap()
    assert await store.jobs.status(late.job_id) is JobStatus.expired
    # Another owner.
    await complete(store, await start(store, owner="bob"), usage(1, 1))

    assert await totals(store, today) == {
        ("alice", "m"): (3, 18, 25, 7),
        ("alice", "m2"): (1, 14, 11, 0),
        ("bob", "m"): (1, 1, 1, 0),
    }
    assert await totals(store, today, owner="bob") == {("bob", "m"): (1, 1, 1, 0)}
    handed_job = await store.jobs.get(handed.job_id)
    assert handed_job.usage == usage(14, 11)
    only_m2 = await store.usage.entries(start=today, end=today, model="m2")
    assert [(e.owner, e.model) for e in only_m2] == [("alice", "m2")]


async def test_a_job_cancelled_while_it_runs_is_charged_what_its_lease_reports_once(
    store: Store, clock: ManualClock
) -> None:
    lease = await start(store)
    assert (await store.jobs.cancel(lease.job_id)).status is JobStatus.cancelled
    assert await totals(store, day_of(clock)) == {("alice", "m"): (1, 0, 0, 0)}

    # The worker learns on its next report, stops, and reports what it used.
    assert await fail(store, lease, usage(6, 3, estimated=True)) is ReportOutcome.ended
    assert await fail(store, lease, usage(6, 3, estimated=True)) is ReportOutcome.ended
    assert await complete(store, lease, usage(6, 50)) is ReportOutcome.ended
    assert await totals(store, day_of(clock)) == {("alice", "m"): (1, 6, 3, 9)}
    job = await store.jobs.get(lease.job_id)
    assert job.status is JobStatus.cancelled and job.usage == usage(6, 3, estimated=True)


async def test_a_result_for_a_job_cancelled_meanwhile_charges_its_usage(
    store: Store, clock: ManualClock
) -> None:
    lease = await start(store)
    await store.jobs.cancel(lease.job_id)
    assert await complete(store, lease, usage(4, 8)) is ReportOutcome.ended
    assert await totals(store, day_of(clock)) == {("alice", "m"): (1, 4, 8, 0)}


async def test_a_stale_lease_charges_nothing(store: Store, clock: ManualClock) -> None:
    lease = await start(store, max_attempts=2)
    clock.advance(31)  # the lease runs out; the job goes back to the queue
    assert (await store.leases.reap()).requeued == 1
    [fresh] = await store.leases.claim(worker_id="w2", lease_owner=WORKER, models=["m"], slots=1)

    assert await fail(store, lease, usage(100, 100)) is ReportOutcome.stale
    assert await complete(store, lease, usage(100, 100)) is ReportOutcome.stale
    assert await store.usage.entries(start=day_of(clock), end=day_of(clock)) == []
    assert (await store.jobs.get(lease.job_id)).usage is None

    await store.jobs.cancel(fresh.job_id)  # the old lease cannot charge the new one's end
    assert await fail(store, lease, usage(100, 100)) is ReportOutcome.stale
    assert await fail(store, fresh, usage(2, 3)) is ReportOutcome.ended
    assert await totals(store, day_of(clock)) == {("alice", "m"): (1, 2, 3, 0)}


async def test_a_result_sent_again_is_charged_once(store: Store, clock: ManualClock) -> None:
    lease = await start(store)
    assert await complete(store, lease, usage(2, 2)) is ReportOutcome.ok
    assert await complete(store, lease, usage(2, 2)) is ReportOutcome.repeated
    failing = await start(store)
    assert await fail(store, failing, usage(1, 1)) is ReportOutcome.failed
    assert await fail(store, failing, usage(1, 1)) is ReportOutcome.repeated
    assert await totals(store, day_of(clock)) == {("alice", "m"): (2, 3, 3, 0)}


async def test_a_job_past_its_deadline_is_charged_what_its_worker_then_reports(
    store: Store, clock: ManualClock
) -> None:
    lease = await start(store, timeout_s=5)
    clock.advance(6)
    report = await store.leases.report(lease.job_id, token=lease.lease_token, lease_owner=WORKER)
    assert report is ReportOutcome.ended
    await fail(store, lease, usage(3, 7))
    assert await totals(store, day_of(clock)) == {("alice", "m"): (1, 3, 7, 0)}


@pytest.mark.parametrize(
    "moment",
    [
        "2027-12-31T23:59:59.999",
        "2028-01-01T00:00:00.000",
        "2028-02-29T12:00:00.000",
        "2028-03-01T00:00:00.000",
        "2100-03-01T00:00:00.000",
        "2000-02-29T23:59:59.999",
    ],
)
async def test_a_job_counts_on_the_utc_day_it_ends(
    store: Store, clock: ManualClock, moment: str
) -> None:
    ended = datetime.fromisoformat(moment).replace(tzinfo=UTC)
    lease = await start(store)
    clock.now_ms = round(ended.timestamp() * 1000)
    await complete(store, lease, usage(1, 2))
    entries = await store.usage.entries(
        start=ended.date() - timedelta(days=1), end=ended.date() + timedelta(days=1)
    )
    assert entries == [UsageEntry(ended.date(), "alice", "m", 1, 1, 2, 0)]


async def test_the_totals_expire_after_the_retention(store: Store, clock: ManualClock) -> None:
    await complete(store, await start(store), usage(1, 1))
    day = day_of(clock)
    retention_ms = RETENTION_DAYS * 86_400_000
    for key in (keys.usage("alice", day), keys.usage_owners(day)):
        ttl_ms = await store.redis.pttl(key)
        assert retention_ms - 60_000 < ttl_ms <= retention_ms
