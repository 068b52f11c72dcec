"""Which parked poll a wake or a direct hand-off goes to (broker/longpoll.py)."""

from __future__ import annotations

from garage.broker.longpoll import PollWaiters
from garage.client.schemas import Kind, Lane, Lease


def lease(job_id: str) -> Lease:
    return Lease(job_id=job_id, lease_token="t", attempt=1, model="m", kind=Kind.chat,
                 lane=Lane.interactive, request={}, lease_s=30)  # fmt: skip


def test_only_a_poll_whose_claim_found_nothing_is_handed_jobs() -> None:
    polls = PollWaiters()
    claiming = polls.park(["m"], worker_id="a")
    assert polls.waiting_for("m") is None  # still claiming: it could come back with jobs
    waiting = polls.park(["m"], worker_id="b")
    waiting.waiting = True
    assert polls.waiting_for("m") is waiting
    polls.hand(waiting, lease("job_1"))
    assert waiting.handed[0].job_id == "job_1" and waiting.event.is_set()
    assert polls.waiting_for("m") is None  # handed one already
    assert polls.wake("m") and claiming.event.is_set()  # a wake still reaches the claimer
    assert polls.waiting_for("other") is None


def test_a_woken_poll_that_leaves_unused_passes_the_wake_on() -> None:
    polls = PollWaiters()
    first, second = polls.park(["m"]), polls.park(["m"])
    assert polls.wake("m") and first.event.is_set() and not second.event.is_set()
    polls.leave(first, used_wake=False)
    assert second.event.is_set()
    polls.leave(second, used_wake=True)
    assert len(polls) == 0
