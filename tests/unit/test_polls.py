"""Which parked poll a wake or a direct hand-off goes to (broker/jobs/polls.py)."""

from __future__ import annotations

from garage.broker.jobs.polls import ClaimHints, ParkedPolls

from ..support import LEASE


def test_only_a_poll_whose_claim_found_nothing_is_handed_jobs() -> None:
    polls = ParkedPolls()
    claiming = polls.park(["m"], worker_id="a")
    assert polls.reserve("m") is None  # still claiming: it could come back with jobs
    waiting = polls.park(["m"], worker_id="b")
    waiting.waiting = True
    assert polls.waiting("m") == 1
    assert polls.reserve("m") is waiting and polls.waiting("m") == 0
    assert polls.reserve("m") is None and not waiting.settled.is_set()  # held for one submit
    assert polls.wake("m") and claiming.event.is_set()  # a wake skips the reserved poll...
    assert not waiting.event.is_set() and not polls.wake("m")  # ...and no other is free
    polls.hand(waiting, LEASE)
    assert waiting.handed[0].job_id == "job_1" and waiting.event.is_set()
    assert waiting.settled.is_set() and polls.reserve("m") is None  # handed one already
    assert polls.reserve("other") is None


def test_a_released_poll_waits_on_and_takes_the_next_job() -> None:
    polls = ParkedPolls()
    poll = polls.park(["m"], worker_id="a")
    poll.waiting = True
    assert polls.reserve("m") is poll
    polls.release(poll)  # the submit found an earlier job, or its script failed
    assert poll.settled.is_set() and not poll.event.is_set() and not poll.handed
    assert polls.reserve("m") is poll


def test_a_woken_poll_that_leaves_unused_passes_the_wake_on() -> None:
    polls = ParkedPolls()
    first, second = polls.park(["m"]), polls.park(["m"])
    assert polls.wake("m") and first.event.is_set() and not second.event.is_set()
    polls.leave(first, used_wake=False)
    assert second.event.is_set()
    polls.leave(second, used_wake=True)
    assert len(polls) == 0


def test_claim_hints_know_a_model_empty_from_a_claim_until_its_next_wake() -> None:
    hints = ClaimHints()
    before = hints.snapshot(["m"])
    hints.found_empty(before)
    assert not hints.known_empty(["m"])  # nothing is known before a confirmed subscription
    hints.subscribed()
    hints.found_empty(before)
    assert not hints.known_empty(["m"])  # that claim began before the subscription
    hints.found_empty(hints.snapshot(["m"]))
    assert hints.known_empty(["m"]) and not hints.known_empty(["m", "n"])
    hints.woken("m")
    assert not hints.known_empty(["m"])


def test_claim_hints_count_a_wake_that_arrives_while_the_claim_runs() -> None:
    hints = ClaimHints()
    hints.subscribed()
    snapshot = hints.snapshot(["m", "n"])
    hints.woken("n")  # a job of n queued after the claim ran in Redis
    hints.found_empty(snapshot)
    assert hints.known_empty(["m"]) and not hints.known_empty(["n"])


def test_claim_hints_forget_everything_when_the_subscription_is_lost_or_renewed() -> None:
    hints = ClaimHints()
    hints.subscribed()
    hints.found_empty(hints.snapshot(["m"]))
    hints.subscribed()  # redis-py reconnected and subscribed again: wakes may have been lost
    assert not hints.known_empty(["m"])
    hints.found_empty(hints.snapshot(["m"]))
    hints.unsubscribed()
    assert not hints.known_empty(["m"])
    assert not hints.known_empty([])
