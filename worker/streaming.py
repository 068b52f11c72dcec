"""Streams one job's text to the broker: the first piece at once, later pieces coalesced.

A `LeaseReporter` keeps at most one report in flight. Text that arrives meanwhile waits in
a buffer and goes out with the next report, so a fast model costs one request per round
trip, not one per token. With no new text it heartbeats to keep the lease. When the broker
says the job was cancelled, or answers 409 (the lease moved on), `stopped` is set with the
reason and the runner aborts the backend request. While the broker is unreachable a report
retries with backoff and new text waits in the buffer; the job runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

from garage.client import LeaseLost, NotFound, WorkerAPI
from garage.contract import Lease, LeaseReport

from .retries import call_broker

__all__ = ["LeaseReporter"]

logger = logging.getLogger(__name__)


class LeaseReporter:
    def __init__(
        self,
        api: WorkerAPI,
        lease: Lease,
        *,
        heartbeat_s: float,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._api = api
        self._on_stop = on_stop
        self._lease = lease
        self._heartbeat_s = heartbeat_s
        self._buffer: list[str] = []
        self._dirty = asyncio.Event()
        self.stopped = asyncio.Event()
        self.stop_reason: str | None = None
        self.reports_sent = 0
        self._started = False
        self._closing = False

    def add_text(self, text: str) -> None:
        if text:
            self._buffer.append(text)
            self._dirty.set()

    def take_text(self) -> str:
        """The text not reported yet (for the final complete report)."""
        text, self._buffer = "".join(self._buffer), []
        return text

    def stop(self, reason: str) -> None:
        if not self.stopped.is_set():
            self.stop_reason = reason
            self.stopped.set()
            logger.info("job.stop", extra={"job_id": self._lease.job_id, "reason": reason})
            if self._on_stop is not None:
                self._on_stop()

    async def finish(self, task: asyncio.Task[None]) -> None:
        """Ends `task` (running `run`) once the report in flight, if any, is answered, so
        its text is neither lost nor sent twice; what is left goes with the final report.
        A task that has not started (the job was over before it got a turn) sent nothing,
        so it is dropped without waiting for it: the result goes out first."""
        self._closing = True
        self._dirty.set()
        if not self._started:
            task.cancel()
            return
        await task

    async def run(self) -> None:
        """Sends reports until told to stop or to finish."""
        self._started = True
        while not self.stopped.is_set() and not self._closing:
            # asyncio.timeout, not wait_for: this task waits on the text itself, so the first
            # token is reported on the loop's next turn, not after a helper task's.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_s):
                    await self._dirty.wait()
            self._dirty.clear()
            if self._closing:
                return
            # Numbered, so a report sent again after a broken connection adds its text once.
            report = LeaseReport(
                lease_token=self._lease.lease_token,
                text=self.take_text(),
                seq=self.reports_sent + 1,
            )
            try:
                send = functools.partial(self._api.report, self._lease.job_id, report)
                reply = await call_broker("report", send, max_wait_s=5.0)
            except LeaseLost:
                self.stop("lease lost")
                return
            except NotFound:
                self.stop("job gone")
                return
            self.reports_sent += 1
            if reply.cancelled:
                self.stop("cancelled")
                return
