"""Batches on a real redis-server: created whole or not at all (stage_batch.lua, then one
commit_batch.lua), counted and published as their jobs end, and kept for the retention
time once written out."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from garage.broker.store import Store, keys
from garage.broker.store.batches import STAGING_TTL_MS, BatchNotCommitted, BatchStore
from garage.contract import (
    BatchCreate,
    BatchStatus,
    ErrorCode,
    JobCreate,
    JobError,
    JobErrorType,
    JobStatus,
    Lane,
)

from ..support import ManualClock, eventually

pytestmark = pytest.mark.asyncio

RETENTION_MS = 3_600_000  # the `store` fixture's
SPEC = BatchCreate(input_file_id="file-1", endpoint="/v1/chat/completions")
MODELS = ("m", "other")


def batch_jobs(count: int, models: tuple[str, ...] = MODELS) -> list[JobCreate]:
    """Batch-lane jobs as the Batch API makes them, spread over `models`."""
    return [
        JobCreate(
            model=models[i % len(models)],
            lane=Lane.batch,
            request={"messages": [{"role": "user", "content": f"prompt {i}"}]},
            metadata={"custom_id": f"req-{i}"},
            start_timeout_s=24 * 3600,
        )
        for i in range(count)
    ]


async def claim_all(store: Store, slots: int = 5000) -> list[Any]:
    return await store.leases.claim(
        worker_id="w1", lease_owner="wk", models=list(MODELS), slots=slots
    )


async def live_state(redis: aioredis.Redis, owner: str) -> dict[str, int]:
    """What the rest of garage can see of batches and their jobs: records, queued jobs,
    the indexes, the start deadlines, event streams."""
    queued = 0
    async for key in redis.scan_iter(match=keys.QUEUE_PREFIX + "*"):
        queued += await redis.zcard(key)
    streams = [key async for key in redis.scan_iter(match=keys.JOB_PREFIX + "*:events")]
    records = [
        key
        async for key in redis.scan_iter(match=keys.BATCH_PREFIX + "*")
        if not key.endswith(":jobs")
    ]
    return {
        "records": len(records),
        "listed batches": await redis.zcard(keys.owner_batches(owner)),
        "queued": queued,
        "owner's jobs": await redis.zcard(keys.owner_jobs(owner)),
        "all jobs": await redis.zcard(keys.ALL_JOBS),
        "start deadlines": await redis.zcard(keys.START_DEADLINES),
        "event streams": len(streams),
    }


async def test_a_staged_batch_whose_commit_never_runs_leaves_only_expiring_keys(
    store: Store, redis: aioredis.Redis
) -> None:
    """As if the broker died between staging the last chunk and the commit."""
    wakes = redis.pubsub()
    await wakes.subscribe(keys.WAKE_CHANNEL)
    assert (await wakes.get_message(timeout=5))["type"] == "subscribe"

    staged = await store.batches.stage("u1", SPEC, batch_jobs(1200))  # three chunks

    assert set((await live_state(redis, "u1")).values()) == {0}
    assert await store.batches.get(staged.batch_id) is None
    assert await store.batches.list("u1", limit=10, after=None) == ([], False)
    assert await store.jobs.list("u1") == ([], False)
    assert await store.jobs.queues() == []
    assert await claim_all(store) == []
    left = [key async for key in redis.scan_iter(match="garage:*")]
    assert len(left) > 1200  # the job hashes, the job list, the staging sets
    for key in left:
        assert 0 < await redis.pttl(key) <= STAGING_TTL_MS, key
    # Nothing was published: a marker sent now is the first message to arrive.
    await redis.publish(keys.WAKE_CHANNEL, "marker")
    assert (await wakes.get_message(timeout=5))["data"] == "marker"
    await wakes.aclose()


async def test_a_committed_batch_is_whole_claimable_and_counted(
    store: Store, redis: aioredis.Redis
) -> None:
    wakes = redis.pubsub()
    await wakes.subscribe(keys.WAKE_CHANNEL)
    assert (await wakes.get_message(timeout=5))["type"] == "subscribe"

    batch = await store.batches.create("u1", SPEC, batch_jobs(1200))

    assert batch.status is BatchStatus.in_progress and batch.request_counts.total == 1200
    assert await live_state(redis, "u1") == {
        "records": 1,
        "listed batches": 1,
        "queued": 1200,
        "owner's jobs": 1200,
        "all jobs": 1200,
        "start deadlines": 1200,
        "event streams": 1200,
    }
    assert [key async for key in redis.scan_iter(match="garage:staging:*")] == []
    job_ids = await redis.lrange(keys.batch_jobs(batch.id), 0, -1)
    assert len(job_ids) == 1200 and await redis.pttl(keys.batch_jobs(batch.id)) == -1
    for job_id in job_ids[::100]:
        assert await redis.pttl(keys.job(job_id)) == -1  # kept for good, like any queued job
        [event] = await store.events.read(job_id, after=None)
        assert event.event == {"type": "status", "status": "queued", "attempt": 0}
    first = await store.jobs.get(job_ids[0])
    assert first.metadata == {"custom_id": "req-0"} and first.batch_id == batch.id
    # One wake per model, for all of its jobs.
    messages = {(await wakes.get_message(timeout=5))["data"] for _ in MODELS}
    assert messages == {"m *600", "other *600"}
    await wakes.aclose()

    leases = await claim_all(store)
    assert sorted(lease.job_id for lease in leases) == sorted(job_ids)
    await asyncio.gather(
        *(
            store.leases.complete(
                lease.job_id, token=lease.lease_token, lease_owner="wk", result={"n": 1}
            )
            for lease in leases
        )
    )
    counted = (await store.batches.get(batch.id))[1]
    assert counted.status is BatchStatus.finalizing
    assert (counted.request_counts.completed, counted.request_counts.failed) == (1200, 0)
    # Queued for the finalizers (the session's live broker runs one on this Redis too, and
    # may take it first); writing the files is idempotent.
    queued = await redis.zscore(keys.BATCHES_TO_FINALIZE, batch.id) is not None
    assert queued or (await store.batches.get(batch.id))[1].status is BatchStatus.completed
    await store.batches.finalize(batch.id)
    done = (await store.batches.get(batch.id))[1]
    output = (await store.files.text(done.output_file_id)).splitlines()
    assert [json.loads(line)["custom_id"] for line in output] == [f"req-{i}" for i in range(1200)]


async def test_a_batch_job_has_the_fields_a_submitted_job_has(store: Store) -> None:
    [spec] = batch_jobs(1)
    batch = await store.batches.create("u1", SPEC, [spec])
    [batch_job_id] = await store.redis.lrange(keys.batch_jobs(batch.id), 0, -1)
    submitted = (await store.jobs.submit("u1", spec)).job_id
    from_batch = await store.redis.hgetall(keys.job(batch_job_id))
    from_submit = await store.redis.hgetall(keys.job(submitted))
    assert from_batch.keys() == from_submit.keys()
    differ = {name for name in from_batch if from_batch[name] != from_submit[name]}
    # and the fair-share tag: the later job takes its turn after the batch's
    assert differ == {"id", "batch_id", "tag"} and from_batch["batch_id"] == batch.id


class _Observed:
    """Stands in for the store's Redis client or its scripts: after each call to Redis
    completes, `observe` looks at what the rest of garage can see."""

    def __init__(self, target: Any, observe: Callable[[], Awaitable[None]]) -> None:
        self._target = target
        self._observe = observe

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name == "pipeline":
            return lambda *a, **kw: _Observed(attribute(*a, **kw), self._observe)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if not inspect.isawaitable(result):
                return result

            async def observed() -> Any:
                value = await result
                await self._observe()
                return value

            return observed()

        return call

    async def __aenter__(self) -> _Observed:
        await self._target.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._target.__aexit__(*exc_info)


async def test_the_batch_goes_live_in_one_step(
    store: Store, redis: aioredis.Redis, clock: ManualClock
) -> None:
    """After every call to Redis that creating a batch makes, garage sees either nothing
    of the batch or all of it: a commit split over several calls would show a part."""
    total = 1200
    whole = {
        "records": 1,
        "listed batches": 1,
        "queued": total,
        "owner's jobs": total,
        "all jobs": total,
        "start deadlines": total,
        "event streams": total,
    }
    seen: list[dict[str, int]] = []

    async def observe() -> None:
        seen.append(await live_state(redis, "u1"))

    batches = BatchStore(
        _Observed(store.redis, observe),
        _Observed(store.batches._scripts, observe),
        clock,
        store.files,
        retention_ms=RETENTION_MS,
    )
    await batches.create("u1", SPEC, batch_jobs(total))
    assert len(seen) >= 4  # three chunks staged, one commit, the read of the record
    partial = [state for state in seen if state != whole and set(state.values()) != {0}]
    assert not partial, f"part of the batch was visible: {partial[0]}"
    assert seen[-1] == whole


@pytest.mark.parametrize("lost", ["a job of the list", "the first job's hash"])
async def test_a_commit_missing_staged_jobs_writes_nothing(
    store: Store, redis: aioredis.Redis, lost: str
) -> None:
    """A chunk lost on the way, or a staging that outlived the staging TTL."""
    staged = await store.batches.stage("u1", SPEC, batch_jobs(10))
    if lost == "a job of the list":
        await redis.rpop(keys.batch_jobs(staged.batch_id))
    else:
        first = await redis.lindex(keys.batch_jobs(staged.batch_id), 0)
        await redis.delete(keys.job(first))
    with pytest.raises(BatchNotCommitted):
        await store.batches.commit(staged)
    assert set((await live_state(redis, "u1")).values()) == {0}
    assert await claim_all(store) == []


async def test_counts_and_the_final_status_are_published_on_the_batch_channel(
    store: Store, redis: aioredis.Redis
) -> None:
    batch = await store.batches.create("u1", SPEC, batch_jobs(2))
    changes = redis.pubsub()
    await changes.subscribe(keys.batch_channel(batch.id))
    assert (await changes.get_message(timeout=5))["type"] == "subscribe"
    first, second = await claim_all(store)
    await store.leases.complete(first.job_id, token=first.lease_token, lease_owner="wk", result={})
    assert (await changes.get_message(timeout=5))["data"] == "1"
    await store.leases.fail(
        second.job_id,
        token=second.lease_token,
        lease_owner="wk",
        error=JobError(message="no", type=JobErrorType.worker_error, code=ErrorCode.job_failed),
        retryable=False,
    )
    assert (await changes.get_message(timeout=5))["data"] == "2"
    await store.batches.finalize(batch.id)
    assert (await changes.get_message(timeout=5))["data"] == "completed"
    await changes.aclose()


async def test_an_ended_batch_is_kept_for_the_retention_time_then_leaves_the_listing(
    store: Store, redis: aioredis.Redis
) -> None:
    kept = await store.batches.create("u1", SPEC, batch_jobs(1))
    ended = await store.batches.create("u1", SPEC, batch_jobs(2))
    for lease in await claim_all(store, slots=3):
        await store.leases.complete(
            lease.job_id, token=lease.lease_token, lease_owner="wk", result={}
        )
    await store.batches.finalize(ended.id)
    await store.batches.finalize(kept.id)
    for batch in (ended, kept):
        assert (await store.batches.get(batch.id))[1].status is BatchStatus.completed
        for key in (keys.batch(batch.id), keys.batch_jobs(batch.id)):
            assert 0 < await redis.pttl(key) <= RETENTION_MS, key

    # The retention time runs out for one of them (Redis's clock, not the test's).
    await redis.pexpire(keys.batch(ended.id), 1)

    async def expired() -> bool:
        return not await redis.exists(keys.batch(ended.id))

    await eventually(expired, what="the batch record to expire")
    listed, more = await store.batches.list("u1", limit=10, after=None)
    assert [batch.id for batch in listed] == [kept.id] and not more
    assert await redis.zscore(keys.owner_batches("u1"), ended.id) is None  # dropped lazily


async def test_a_job_ending_after_its_batch_expired_does_not_bring_the_record_back(
    store: Store, redis: aioredis.Redis
) -> None:
    batch = await store.batches.create("u1", SPEC, batch_jobs(1))
    [lease] = await claim_all(store)
    await redis.delete(keys.batch(batch.id))
    await store.leases.complete(lease.job_id, token=lease.lease_token, lease_owner="wk", result={})
    assert await redis.exists(keys.batch(batch.id)) == 0
    assert (await store.jobs.get(lease.job_id)).status is JobStatus.succeeded


async def test_listing_batches_made_in_the_same_millisecond_loses_none(store: Store) -> None:
    made = {(await store.batches.create("u1", SPEC, batch_jobs(1))).id for _ in range(7)}
    seen: list[str] = []
    after = None
    while True:
        page, more = await store.batches.list("u1", limit=3, after=after)
        seen += [batch.id for batch in page]
        if not more:
            break
        after = page[-1].id
    assert sorted(seen) == sorted(made)  # each once
