"""Randomized interleavings of every store operation, checked against a model of the rules.

Hypothesis drives submits, claims by two workers, reports with current and stale tokens,
completions, failures, handbacks, cancels and clock jumps with reaper passes. After every
step the Redis state must match the model: no job lost, none held by two leases, terminal
states unchanged, stale tokens rejected without effect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from garage.broker.store import Store, keys
from garage.broker.store.jobs import LeaseTarget
from garage.broker.store.leases import ReportOutcome
from garage.contract import JobCreate, JobError, JobStatus, Lane

from ..support import ManualClock

LEASE_S = 30
MODELS = ("a", "b")
TERMINAL = {"succeeded", "failed", "cancelled", "expired"}


@dataclass
class ModelJob:
    model: str
    lane: str
    max_attempts: int
    status: str = "queued"
    attempt: int = 0
    token: str | None = None
    lease_expires_ms: int = 0
    stale_tokens: list[str] = field(default_factory=list)


def make_machine(redis_url: str) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = ManualClock()
            self.redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
            self.run(self.redis.flushdb())
            self.store = Store.connect(
                redis_url,
                self.clock,
                lease_ms=LEASE_S * 1000,
                retention_ms=3_600_000,
                worker_alive_ms=60_000,
            )
            self.jobs: dict[str, ModelJob] = {}

        def run(self, awaitable):
            async def awaited():
                return await awaitable

            return self.loop.run_until_complete(awaited())

        def submit_job(self, *args, **kw):
            """`JobStore.submit` writes its script as it is called: call it on the loop."""

            async def submitted():
                return await self.store.jobs.submit(*args, **kw)

            return self.loop.run_until_complete(submitted())

        def teardown(self) -> None:
            self.run(self.store.aclose())
            self.run(self.redis.aclose())
            self.loop.close()

        def running(self) -> list[str]:
            return [i for i, j in self.jobs.items() if j.status == "running"]

        @rule(
            model=st.sampled_from(MODELS),
            lane=st.sampled_from(["interactive", "batch"]),
            max_attempts=st.integers(1, 3),
        )
        def submit(self, model: str, lane: str, max_attempts: int) -> None:
            spec = JobCreate(
                model=model,
                lane=Lane(lane),
                max_attempts=max_attempts,
                request={"messages": [{"role": "user", "content": "x"}]},
            )
            submitted = self.submit_job("owner", spec)
            assert submitted.created and submitted.job_id not in self.jobs
            self.jobs[submitted.job_id] = ModelJob(model, lane, max_attempts)
            self.clock.advance(0.001)

        @rule(model=st.sampled_from(MODELS), max_attempts=st.integers(1, 3))
        def submit_to_a_parked_poll(self, model: str, max_attempts: int) -> None:
            """The direct hand-off: an interactive job created already leased."""
            spec = JobCreate(
                model=model,
                max_attempts=max_attempts,
                request={"messages": [{"role": "user", "content": "x"}]},
            )
            target = LeaseTarget("w1", "key", LEASE_S * 1000)
            submitted = self.submit_job("owner", spec, lease_to=target)
            assert submitted.created and submitted.lease is not None
            assert submitted.lease.attempt == 1
            self.jobs[submitted.job_id] = ModelJob(
                model,
                "interactive",
                max_attempts,
                status="running",
                attempt=1,
                token=submitted.lease.lease_token,
                lease_expires_ms=self.clock() + LEASE_S * 1000,
            )
            self.clock.advance(0.001)

        @rule(
            worker=st.sampled_from(["w1", "w2"]),
            models=st.sampled_from([("a",), ("b",), ("a", "b")]),
            slots=st.integers(1, 3),
        )
        def claim(self, worker: str, models: tuple[str, ...], slots: int) -> None:
            queued = [i for i, j in self.jobs.items() if j.status == "queued" and j.model in models]
            leases = self.run(
                self.store.leases.claim(
                    worker_id=worker, lease_owner="key", models=list(models), slots=slots
                )
            )
            assert len(leases) == min(slots, len(queued))
            for lease in leases:
                job = self.jobs[lease.job_id]
                assert lease.job_id in queued and job.model in models
                assert lease.attempt == job.attempt + 1
                job.status, job.attempt, job.token = "running", lease.attempt, lease.lease_token
                job.lease_expires_ms = self.clock() + LEASE_S * 1000
            lanes = [self.jobs[lease.job_id].lane for lease in leases]
            if "batch" in lanes:  # interactive first: none may be left behind
                assert not any(
                    j.status == "queued" and j.lane == "interactive" and j.model in models
                    for j in self.jobs.values()
                )
            assert lanes == sorted(lanes, key=lambda lane: lane != "interactive")

        @precondition(lambda self: self.running())
        @rule(data=st.data(), text=st.text(max_size=5))
        def report(self, data, text: str) -> None:
            job_id = data.draw(st.sampled_from(self.running()))
            job = self.jobs[job_id]
            outcome = self.run(
                self.store.leases.report(job_id, token=job.token, lease_owner="key", text=text)
            )
            assert outcome == ReportOutcome.ok
            job.lease_expires_ms = self.clock() + LEASE_S * 1000

        @precondition(lambda self: any(j.stale_tokens or j.token for j in self.jobs.values()))
        @rule(data=st.data(), verb=st.sampled_from(["report", "complete", "fail"]))
        def stale_report(self, data, verb: str) -> None:
            candidates = [i for i, j in self.jobs.items() if j.stale_tokens]
            if not candidates:
                return
            job_id = data.draw(st.sampled_from(candidates))
            token = data.draw(st.sampled_from(self.jobs[job_id].stale_tokens))
            before = self.run(self.redis.hgetall(keys.job(job_id)))
            call = {
                "report": lambda: self.store.leases.report(job_id, token=token, lease_owner="key"),
                "complete": lambda: self.store.leases.complete(
                    job_id, token=token, lease_owner="key", result={}
                ),
                "fail": lambda: self.store.leases.fail(
                    job_id, token=token, lease_owner="key", error=JobError(message="x")
                ),
            }[verb]
            assert self.run(call()) == ReportOutcome.stale
            assert self.run(self.redis.hgetall(keys.job(job_id))) == before

        @precondition(lambda self: self.running())
        @rule(data=st.data())
        def complete(self, data) -> None:
            job_id = data.draw(st.sampled_from(self.running()))
            job = self.jobs[job_id]
            outcome = self.run(
                self.store.leases.complete(
                    job_id, token=job.token, lease_owner="key", result={"n": job.attempt}
                )
            )
            assert outcome == ReportOutcome.ok
            job.status = "succeeded"

        @precondition(lambda self: self.running())
        @rule(data=st.data(), retryable=st.booleans(), handback=st.booleans())
        def fail(self, data, retryable: bool, handback: bool) -> None:
            job_id = data.draw(st.sampled_from(self.running()))
            job = self.jobs[job_id]
            outcome = self.run(
                self.store.leases.fail(
                    job_id,
                    token=job.token,
                    lease_owner="key",
                    error=JobError(message="e"),
                    retryable=retryable,
                    handback=handback,
                )
            )
            if handback:
                job.max_attempts += 1
            if handback or (retryable and job.attempt < job.max_attempts):
                assert outcome == ReportOutcome.requeued
                self._requeue(job)
            else:
                assert outcome == ReportOutcome.failed
                job.status = "failed"

        @precondition(lambda self: self.jobs)
        @rule(data=st.data())
        def cancel(self, data) -> None:
            job_id = data.draw(st.sampled_from(sorted(self.jobs)))
            job = self.jobs[job_id]
            outcome = self.run(self.store.jobs.cancel(job_id))
            if job.status in TERMINAL:
                assert outcome.status == JobStatus(job.status)
            else:
                assert outcome.status == JobStatus.cancelled
                if job.token:  # the worker's next report learns it
                    token = job.token
                    assert (
                        self.run(self.store.leases.report(job_id, token=token, lease_owner="key"))
                        == ReportOutcome.ended
                    )
                job.status = "cancelled"

        @rule(seconds=st.sampled_from([1, 10, 29, 31, 45]))
        def advance_and_reap(self, seconds: int) -> None:
            self.clock.advance(seconds)
            counts = self.run(self.store.leases.reap())
            requeued = failed = 0
            for job in self.jobs.values():
                if job.status == "running" and job.lease_expires_ms <= self.clock():
                    if job.attempt < job.max_attempts:
                        self._requeue(job)
                        requeued += 1
                    else:
                        job.status = "failed"
                        failed += 1
            assert (counts.requeued, counts.failed) == (requeued, failed)

        def _requeue(self, job: ModelJob) -> None:
            job.status = "queued"
            job.stale_tokens.append(job.token)
            job.token = None

        @invariant()
        def redis_matches_the_model(self) -> None:
            async def check() -> None:
                leased = set(await self.redis.zrange(keys.LEASES, 0, -1))
                queued = {}
                for model in MODELS:
                    for lane in ("interactive", "batch"):
                        for job_id in await self.redis.zrange(keys.queue(model, lane), 0, -1):
                            assert job_id not in queued, "a job sits in two queues"
                            queued[job_id] = (model, lane)
                for job_id, job in self.jobs.items():
                    fields = await self.redis.hgetall(keys.job(job_id))
                    assert fields, f"job {job_id} was lost"
                    assert fields["status"] == job.status, (job_id, fields["status"], job)
                    assert int(fields["attempt"]) == job.attempt
                    assert (job_id in queued) == (job.status == "queued")
                    if job.status == "queued":
                        assert queued[job_id] == (job.model, job.lane)
                    assert (job_id in leased) == (job.status == "running")
                    if job.status == "running":
                        assert fields["lease_token"] == job.token
                assert set(queued) | leased <= set(self.jobs)

            self.run(check())

    return StoreMachine


def test_store_state_machine(redis_url: str) -> None:
    machine = make_machine(redis_url)
    machine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
