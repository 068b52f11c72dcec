"""Which parked poll a wake or a direct hand-off goes to (broker/longpoll.py)."""

from __future__ import annotations

from garage.broker.longpoll import ClaimHints, PollWaiters

from ..support import LEASE


def test_only_a_poll_whose_claim_found_nothing_is_handed_jobs() -> None:
    polls = PollWaiters()
    claiming = polls.park(["m"], worker_id="a")
    assert polls.waiting_for("m") is None  # still claiming: it could come back with jobs
    waiting = polls.park(["m"], worker_id="b")
    waiting.waiting = True
    assert polls.waiting_for("m") is waiting
    polls.hand(waiting, LEASE)
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
