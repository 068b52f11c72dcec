"""Contribution per worker key on a real redis-server: complete.lua credits the lease's
worker key with the job, its run time and its completion tokens, once, by UTC day and
worker id, with the key's name and owner; nothing else earns or takes away anything."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from garage.broker.store import Store, keys
from garage.broker.store.contributions import RETENTION_DAYS, ContributionEntry
from garage.broker.store.leases import ReportOutcome
from garage.contract import JobCreate, JobError, JobStatus, Lease, Role, Usage

from ..support import ManualClock

pytestmark = pytest.mark.asyncio


def usage(prompt: int, completion: int, *, estimated: bool = False) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        estimated=estimated,
    )


async def start(store: Store, key: str, worker: str = "w1", *, model: str = "m", **kw) -> Lease:
    """A job submitted and leased by worker `worker` under worker key `key`."""
    spec = JobCreate(model=model, request={"messages": [{"role": "user", "content": "hi"}]}, **kw)
    job_id = (await store.jobs.submit("alice", spec)).job_id
    [lease] = await store.leases.claim(worker_id=worker, lease_owner=key, models=[model], slots=1)
    assert lease.job_id == job_id
    return lease


async def complete(store: Store, lease: Lease, key: str, used: Usage | None) -> ReportOutcome:
    return await store.leases.complete(
        lease.job_id, token=lease.lease_token, lease_owner=key, result={"ok": 1}, usage=used
    )


async def fail(store: Store, lease: Lease, key: str, used: Usage | None, **kw) -> ReportOutcome:
    return await store.leases.fail(
        lease.job_id, token=lease.lease_token, lease_owner=key,
        error=JobError(message="boom"), usage=used, **kw,
    )  # fmt: skip


def day_of(clock: ManualClock) -> date:
    return datetime.fromtimestamp(clock.now_ms / 1000, UTC).date()


async def given(store: Store, day: date, key: str | None = None) -> dict[tuple, tuple]:
    """(key, worker) -> (jobs, busy_ms, completion, estimated, owner, name) on `day`."""
    entries = await store.contributions.entries(start=day, end=day, key=key)
    return {
        (e.key, e.worker): (
            e.jobs, e.busy_ms, e.completion_tokens, e.estimated_tokens, e.owner, e.name,
        )
        for e in entries
    }  # fmt: skip


async def test_a_result_credits_its_lease_owner_with_the_run_time_and_tokens(
    store: Store, clock: ManualClock
) -> None:
    owner = await store.apikeys.create(Role.user, "olga")
    rig = await store.apikeys.create(Role.worker, "rig-1", owner=owner.id)
    other = await store.apikeys.create(Role.worker, "rig-2")

    lease = await start(store, rig.id)
    clock.advance(12.5)  # the attempt runs 12.5 s
    assert await complete(store, lease, rig.id, usage(100, 40)) is ReportOutcome.ok
    lease = await start(store, rig.id, "w2")
    clock.advance(3)
    await complete(store, lease, rig.id, usage(5, 7, estimated=True))
    lease = await start(store, rig.id)
    clock.advance(0.25)
    await complete(store, lease, rig.id, None)  # a worker that reported no usage
    lease = await start(store, other.id, "w9")
    clock.advance(1)
    await complete(store, lease, other.id, usage(1, 2))

    assert await given(store, day_of(clock)) == {
        (rig.id, "w1"): (2, 12_750, 40, 0, owner.id, "rig-1"),
        (rig.id, "w2"): (1, 3_000, 7, 7, owner.id, "rig-1"),  # only completion tokens
        (other.id, "w9"): (1, 1_000, 2, 0, None, "rig-2"),
    }
    assert set(await given(store, day_of(clock), key=other.id)) == {(other.id, "w9")}


async def test_only_the_attempt_that_produced_the_result_earns(
    store: Store, clock: ManualClock
) -> None:
    # Handed back after 4 s: that attempt earns nothing; the next one, elsewhere, does.
    handed = await start(store, "rig-a", max_attempts=3)
    clock.advance(4)
    assert await fail(store, handed, "rig-a", usage(3, 9), handback=True) is ReportOutcome.requeued
    [again] = await store.leases.claim(worker_id="wb", lease_owner="rig-b", models=["m"], slots=1)
    clock.advance(2)
    await complete(store, again, "rig-b", usage(3, 5))
    # A retryable error, then a result from the same key.
    flaky = await start(store, "rig-a", max_attempts=3)
    clock.advance(1)
    assert await fail(store, flaky, "rig-a", None, retryable=True) is ReportOutcome.requeued
    [retry] = await store.leases.claim(worker_id="w1", lease_owner="rig-a", models=["m"], slots=1)
    clock.advance(6)
    await complete(store, retry, "rig-a", usage(1, 1))

    assert await given(store, day_of(clock)) == {
        ("rig-b", "wb"): (1, 2_000, 5, 0, None, None),  # no key record: no name, no owner
        ("rig-a", "w1"): (1, 6_000, 1, 0, None, None),
    }


async def test_failed_cancelled_fenced_reaped_and_repeated_earn_nothing(
    store: Store, clock: ManualClock
) -> None:
    failed = await start(store, "rig")
    clock.advance(5)
    assert await fail(store, failed, "rig", usage(1, 50)) is ReportOutcome.failed
    # Cancelled while it ran: its result still charges the user, but earns nothing.
    cancelled = await start(store, "rig")
    clock.advance(5)
    await store.jobs.cancel(cancelled.job_id)
    assert await complete(store, cancelled, "rig", usage(1, 50)) is ReportOutcome.ended
    # Failed past its deadline at its worker's next report: the late result earns nothing.
    late = await start(store, "rig", timeout_s=2)
    clock.advance(3)
    report = await store.leases.report(late.job_id, token=late.lease_token, lease_owner="rig")
    assert report is ReportOutcome.ended
    assert await complete(store, late, "rig", usage(1, 50)) is ReportOutcome.ended
    # The lease ran out (a broker down, a partition): requeued, then fenced; the holder of
    # the new lease earns, the old one nothing, and nobody loses anything.
    moved = await start(store, "rig", max_attempts=2)
    clock.advance(31)
    assert (await store.leases.reap()).requeued == 1
    [fresh] = await store.leases.claim(worker_id="w2", lease_owner="rig-2", models=["m"], slots=1)
    assert await complete(store, moved, "rig", usage(1, 50)) is ReportOutcome.stale
    assert await given(store, day_of(clock)) == {}
    clock.advance(1)
    assert await complete(store, fresh, "rig-2", usage(1, 4)) is ReportOutcome.ok
    assert await complete(store, fresh, "rig-2", usage(1, 4)) is ReportOutcome.repeated
    # Reaped on its last attempt: failed, and nothing is taken from anyone.
    last = await start(store, "rig-2", max_attempts=1)
    clock.advance(31)
    assert (await store.leases.reap()).failed == 1
    assert (await store.jobs.get(last.job_id)).status is JobStatus.failed

    assert await given(store, day_of(clock)) == {("rig-2", "w2"): (1, 1_000, 4, 0, None, None)}
    job = await store.jobs.get(cancelled.job_id)
    assert job.status is JobStatus.cancelled and job.usage == usage(1, 50)  # charged, not earned


async def test_a_revoked_key_keeps_its_name_and_owner_in_its_history(
    store: Store, clock: ManualClock
) -> None:
    owner = await store.apikeys.create(Role.user, "olga")
    rig = await store.apikeys.create(Role.worker, "rig-1", owner=owner.id)
    await complete(store, await start(store, rig.id), rig.id, usage(1, 1))
    assert await store.apikeys.revoke(rig.id)
    [entry] = await store.contributions.entries(start=day_of(clock), end=day_of(clock))
    assert (entry.owner, entry.name) == (owner.id, "rig-1")


@pytest.mark.parametrize("moment", ["2027-12-31T23:59:59.999", "2028-01-01T00:00:00.000"])
async def test_a_result_counts_on_the_utc_day_it_arrives(
    store: Store, clock: ManualClock, moment: str
) -> None:
    ended = datetime.fromisoformat(moment).replace(tzinfo=UTC)
    clock.now_ms = round(ended.timestamp() * 1000) - 1_000
    lease = await start(store, "rig")
    clock.advance(1)
    await complete(store, lease, "rig", usage(1, 2))
    entries = await store.contributions.entries(
        start=ended.date() - timedelta(days=1), end=ended.date() + timedelta(days=1)
    )
    assert entries == [ContributionEntry(ended.date(), "rig", "w1", None, None, 1, 1_000, 2, 0)]


async def test_the_contributions_expire_after_the_retention(
    store: Store, clock: ManualClock
) -> None:
    await complete(store, await start(store, "rig"), "rig", usage(1, 1))
    day = day_of(clock)
    retention_ms = RETENTION_DAYS * 86_400_000
    for key in (keys.contribution("rig", day), keys.contribution_keys(day)):
        ttl_ms = await store.redis.pttl(key)
        assert retention_ms - 60_000 < ttl_ms <= retention_ms
