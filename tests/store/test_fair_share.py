"""Fair share between keys on a real redis-server: a queue runs its owners' jobs in turns
(start-time fair queueing, `fair_tag` in lib.lua), however many one of them queued."""

from __future__ import annotations

from garage.broker.store import Store
from garage.contract import BatchCreate, JobCreate, Lane

from ..support import ManualClock
from .test_lifecycle import chat, claim


async def owners_in_lease_order(store: Store, count: int, models=("m",)) -> list[str]:
    order = []
    for _ in range(count):
        [lease] = await claim(store, models=models)
        job = await store.jobs.get(lease.job_id)
        assert job is not None
        order.append(job.owner)
    return order


async def test_a_key_that_queued_much_does_not_hold_back_one_that_comes_later(
    store: Store, clock: ManualClock
) -> None:
    for _ in range(30):
        await store.jobs.submit("flood", chat(lane=Lane.batch))
    clock.advance(5)  # much later, with the flood still queued
    for _ in range(3):
        await store.jobs.submit("late", chat(lane=Lane.batch))
    order = await owners_in_lease_order(store, 8)
    assert order == ["flood", "late", "flood", "late", "flood", "late", "flood", "flood"]


async def test_turns_hold_across_the_models_a_worker_serves(
    store: Store, clock: ManualClock
) -> None:
    for _ in range(10):
        await store.jobs.submit("flood", chat(model="a"))
    clock.advance(1)
    await store.jobs.submit("late", chat(model="b"))
    order = await owners_in_lease_order(store, 3, models=("a", "b"))
    assert order[:2] == ["flood", "late"]


async def test_a_batch_takes_its_turns_after_its_owners_earlier_jobs(
    store: Store, clock: ManualClock
) -> None:
    for _ in range(20):
        await store.jobs.submit("flood", chat(lane=Lane.batch))
    clock.advance(1)
    create = BatchCreate(input_file_id="file_x", endpoint="/v1/chat/completions")
    specs = [JobCreate(model="m", lane=Lane.batch, request=chat().request) for _ in range(3)]
    await store.batches.create("batcher", create, specs)
    order = await owners_in_lease_order(store, 6)
    assert order == ["flood", "batcher", "flood", "batcher", "flood", "batcher"]


async def test_an_owner_with_nothing_left_starts_afresh(store: Store, clock: ManualClock) -> None:
    """An owner's turns do not carry over once its work is all done: a flood that ended
    leaves no debt, and a job queued later runs by the lane's clock."""
    for _ in range(5):
        await store.jobs.submit("burst", chat(lane=Lane.batch))
    for lease in await claim(store, slots=5):
        await store.leases.complete(
            lease.job_id, token=lease.lease_token, lease_owner="wk", result={}
        )
    await store.jobs.submit("steady", chat(lane=Lane.batch))
    clock.advance(1)
    await store.jobs.submit("burst", chat(lane=Lane.batch))
    assert await owners_in_lease_order(store, 2) == ["steady", "burst"]
