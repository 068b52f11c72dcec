"""The lease reporter's rules: first text at once, later text coalesced while a report is in
flight, heartbeats when idle, and a stop on cancel or a lost lease. The broker is a small
in-memory stand-in whose answers the test releases one at a time."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from garage.client import LeaseLost
from garage.contract import LeaseReport, ReportReply
from garage.worker.streaming import LeaseReporter

from ..support import LEASE, eventually


class GatedBroker:
    """Records each report and answers only when the test says so."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        self.answers: asyncio.Queue[ReportReply | Exception] = asyncio.Queue()

    async def report(self, job_id: str, report: LeaseReport) -> ReportReply:
        self.reports.append(report.text)
        answer = await self.answers.get()
        if isinstance(answer, Exception):
            raise answer
        return answer


OK = ReportReply(cancelled=False)


@pytest.fixture
async def broker_and_reporter():
    broker = GatedBroker()
    reporter = LeaseReporter(broker, LEASE, heartbeat_s=30)  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    yield broker, reporter
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_first_text_at_once_then_coalesced_while_in_flight(broker_and_reporter) -> None:
    broker, reporter = broker_and_reporter
    reporter.add_text("Hel")

    async def sent(n: int):
        return len(broker.reports) == n

    await eventually(lambda: sent(1), what="the first report")
    assert broker.reports == ["Hel"]
    for piece in ("lo", " wor", "ld"):  # arrive while the first report is unanswered
        reporter.add_text(piece)
    await asyncio.sleep(0.05)
    assert broker.reports == ["Hel"]  # still one in flight, nothing more sent
    await broker.answers.put(OK)
    await eventually(lambda: sent(2), what="the coalesced report")
    assert broker.reports == ["Hel", "lo world"]


async def test_heartbeat_when_nothing_new() -> None:
    broker = GatedBroker()
    reporter = LeaseReporter(broker, LEASE, heartbeat_s=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    for _ in range(3):
        await broker.answers.put(OK)

    async def beats():
        return len(broker.reports) >= 3

    await eventually(beats, what="three heartbeats")
    assert broker.reports[:3] == ["", "", ""]
    task.cancel()


async def test_cancelled_reply_stops(broker_and_reporter) -> None:
    broker, reporter = broker_and_reporter
    reporter.add_text("x")
    await broker.answers.put(ReportReply(cancelled=True, accepted=False))
    await asyncio.wait_for(reporter.stopped.wait(), 5)
    assert reporter.stop_reason == "cancelled"


async def test_lost_lease_stops(broker_and_reporter) -> None:
    broker, reporter = broker_and_reporter
    reporter.add_text("x")
    await broker.answers.put(LeaseLost(409, "the lease on job job_1 is no longer yours"))
    await asyncio.wait_for(reporter.stopped.wait(), 5)
    assert reporter.stop_reason == "lease lost"


async def test_finish_waits_for_the_report_in_flight_and_keeps_the_rest() -> None:
    broker = GatedBroker()
    reporter = LeaseReporter(broker, LEASE, heartbeat_s=30)  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    reporter.add_text("a")

    async def sent():
        return broker.reports == ["a"]

    await eventually(sent, what="the first report")
    reporter.add_text("b")
    finishing = asyncio.create_task(reporter.finish(task))
    await asyncio.sleep(0.05)
    assert not finishing.done()  # waits for the answer to "a"
    await broker.answers.put(OK)
    await asyncio.wait_for(finishing, 5)
    assert broker.reports == ["a"] and reporter.take_text() == "b"  # "b" goes with complete
