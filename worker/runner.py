"""Runs one leased job on the backend and reports how it ended.

The backend request and the `LeaseReporter` run side by side. Text goes to the reporter as
the backend streams it. If the reporter learns the job was cancelled or the lease was lost,
the backend request is cancelled at once, which closes its HTTP stream so the backend stops
generating. A finished job is completed (with any text not reported yet); a backend error
fails it, retryable or not as the backend adapter classified it.

Every final report carries what the attempt used (`usage.py` counts what the backend did
not report): a finished job its whole usage; an attempt that stops after some text (failed,
handed back, or cancelled while it ran) its prompt and the text it streamed. A worker
whose lease moved on reports nothing: the broker would fence it and charge nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from enum import StrEnum

from garage.client import LeaseLost, NotFound, WorkerAPI
from garage.contract import (
    CompleteReport,
    FailReport,
    JobError,
    JobErrorType,
    Kind,
    Lease,
    Timings,
    Usage,
)

from .backends import Backend, BackendError, BackendResult
from .retries import call_broker
from .streaming import LeaseReporter
from .usage import UsageCounter, generated_text

__all__ = ["JobRunner", "RunOutcome"]

logger = logging.getLogger(__name__)


class RunOutcome(StrEnum):
    completed = "completed"  # the broker accepted the result
    failed = "failed"  # reported as failed (the broker may retry it elsewhere)
    stopped = "stopped"  # cancelled by its owner, or the lease moved on: work dropped
    handed_back = "handed_back"  # given back unfinished while draining
    lost = "lost"  # the broker refused the final report (lease lost meanwhile)


class JobRunner:
    def __init__(
        self,
        lease: Lease,
        *,
        api: WorkerAPI,
        backend: Backend,
        usage: UsageCounter,
        heartbeat_s: float,
    ) -> None:
        self.lease = lease
        self._api = api
        self._backend = backend
        self._usage = usage
        self._streamed: list[str] = []  # every piece of text the backend sent, in order
        # Beat at least three times per lease, whatever the setting, so one lost report
        # never costs the lease.
        beat_s = min(heartbeat_s, lease.lease_s / 3)
        self.reporter = LeaseReporter(api, lease, heartbeat_s=beat_s, on_stop=self._interrupt)
        self._task: asyncio.Task[RunOutcome] | None = None
        self._in_backend = False  # the task is waiting on the backend: a stop cancels it
        self._interrupted = False  # ...and it did
        self._handing_back = False
        self.backend_failed = False  # the backend was unavailable: worth a health check

    async def run(self) -> RunOutcome:
        """Runs the job in the calling task: the backend request goes out at once, before
        anything else this worker has to send (its next poll, say)."""
        lease = self.lease
        log = {"job_id": lease.job_id, "attempt": lease.attempt, "model": lease.model}
        logger.info("job.start", extra=log)
        on_text = None if lease.kind is Kind.embedding else self._on_text
        self._task = asyncio.current_task()
        reporting = asyncio.create_task(self.reporter.run())
        result: BackendResult | None = None
        failure: BaseException | None = None
        self._in_backend = True
        try:
            result = await self._backend.run(lease.kind, lease.request, on_text)
        except asyncio.CancelledError:
            # Ours (cancelled, lease lost, handing back) unless someone else cancels too.
            if not self._interrupted or (self._task is not None and self._task.uncancel()):
                reporting.cancel()
                raise
        except Exception as exc:
            failure = exc
        finally:
            self._in_backend = False
        if self._interrupted or self._handing_back:
            # Drop the work: the backend request is closed by the cancellation.
            await _cancel(reporting)
            return await self._stopped(None)
        await self.reporter.finish(reporting)
        if self.reporter.stopped.is_set():
            return await self._stopped(result)
        if isinstance(failure, BackendError):
            self.backend_failed = failure.retryable
            logger.info("job.backend_error", extra={**log, "error": failure.message})
            return await self._fail(
                failure.to_job_error(),
                retryable=failure.retryable,
                usage=await self._streamed_usage(),
            )
        if failure is not None:  # an adapter bug must fail this job, not the worker
            logger.error("job.crashed", exc_info=failure, extra=log)
            return await self._fail(
                JobError(message=f"worker error: {failure!r}", type="worker_error"),
                retryable=True,
                usage=await self._streamed_usage(),
            )
        assert result is not None
        return await self._complete(result)

    def _interrupt(self) -> None:
        """The reporter stopped (cancelled, lease lost, handing back): abort the backend
        request if it is under way."""
        if self._in_backend and self._task is not None and not self._interrupted:
            self._interrupted = True
            self._task.cancel()

    def hand_back(self) -> None:
        """Stops the job to give it back to the broker (the worker is draining)."""
        self._handing_back = True
        self.reporter.stop("handing back")

    async def _on_text(self, text: str) -> None:
        self._streamed.append(text)
        self.reporter.add_text(text)

    async def _usage_of(self, result: BackendResult) -> Usage:
        """A finished job's usage: the backend's counts, the missing ones counted."""
        return await self._usage.usage(
            self.lease.kind,
            self.lease.request,
            generated=generated_text(self.lease.kind, result.result),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )

    async def _streamed_usage(self) -> Usage | None:
        """What an attempt that stops early used: its prompt and the text it streamed;
        None (nothing to charge) when it streamed nothing."""
        streamed = "".join(self._streamed)
        if not streamed:
            return None
        return await self._usage.usage(self.lease.kind, self.lease.request, generated=streamed)

    async def _stopped(self, result: BackendResult | None) -> RunOutcome:
        """The reporter stopped the job, before the backend finished or (`result`) after:
        hand it back (draining), report what the attempt used (the job was cancelled or
        ended under this lease), or drop it (the lease moved on, or the job is gone)."""
        if self._handing_back:
            return await self._hand_back(await self._attempt_usage(result))
        if self.reporter.stop_reason == "cancelled":
            used = await self._attempt_usage(result)
            if used is not None:
                await self._send_usage(
                    FailReport(
                        lease_token=self.lease.lease_token,
                        error=JobError(
                            message="stopped: the job ended", type=JobErrorType.cancelled
                        ),
                        usage=used,
                    )
                )
        return RunOutcome.stopped

    async def _attempt_usage(self, result: BackendResult | None) -> Usage | None:
        return await self._usage_of(result) if result is not None else await self._streamed_usage()

    async def _complete(self, result: BackendResult) -> RunOutcome:
        usage = await self._usage_of(result)
        body = result.result
        if result.prompt_tokens is None or result.completion_tokens is None:
            body = body | {"usage": usage.model_dump()}  # what OpenAI clients read
        report = CompleteReport(
            lease_token=self.lease.lease_token,
            result=body,
            usage=usage,
            timings=Timings(first_token_ms=result.first_token_ms, backend_ms=result.backend_ms),
            text=self.reporter.take_text(),
        )
        return await self._final("complete", report, RunOutcome.completed)

    async def _fail(self, error: JobError, *, retryable: bool, usage: Usage | None) -> RunOutcome:
        report = FailReport(
            lease_token=self.lease.lease_token, error=error, retryable=retryable, usage=usage
        )
        return await self._final("fail", report, RunOutcome.failed)

    async def _hand_back(self, used: Usage | None) -> RunOutcome:
        report = FailReport(
            lease_token=self.lease.lease_token,
            error=JobError(message="the worker is shutting down", type="handback"),
            handback=True,
            usage=used,
        )
        return await self._final("fail", report, RunOutcome.handed_back)

    async def _send_usage(self, report: FailReport) -> None:
        """Reports what a stopped attempt used; the broker charges it once, or not at all
        if this lease no longer holds the job."""
        send = functools.partial(self._api.fail, self.lease.job_id, report)
        try:
            await call_broker("fail", send)
        except (LeaseLost, NotFound) as exc:
            logger.info("job.usage_refused", extra={"job_id": self.lease.job_id, "error": str(exc)})
            return
        logger.info("job.usage_reported", extra={"job_id": self.lease.job_id})

    async def _final(
        self, verb: str, report: CompleteReport | FailReport, outcome: RunOutcome
    ) -> RunOutcome:
        started = time.monotonic()
        send = self._api.complete if verb == "complete" else self._api.fail
        try:
            reply = await call_broker(verb, functools.partial(send, self.lease.job_id, report))
        except (LeaseLost, NotFound) as exc:
            logger.warning(
                "job.result_refused", extra={"job_id": self.lease.job_id, "error": str(exc)}
            )
            return RunOutcome.lost
        logger.info(
            f"job.{outcome.value}",
            extra={
                "job_id": self.lease.job_id,
                "attempt": self.lease.attempt,
                "reports": self.reporter.reports_sent,
                "report_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return (
            RunOutcome.stopped if reply.cancelled and outcome is RunOutcome.completed else outcome
        )


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
