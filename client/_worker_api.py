"""The broker's worker-side API, as the worker daemon uses it."""

from __future__ import annotations

import httpx

from garage.contract import (
    CompleteReport,
    FailReport,
    LeaseReport,
    PollReply,
    PollRequest,
    ReportReply,
    WorkerState,
)

from ._http import Requester

__all__ = ["WorkerAPI"]


class WorkerAPI:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._http = Requester(url, api_key, http=http, timeout_s=timeout_s)

    async def poll(self, request: PollRequest) -> PollReply:
        return await self._http.call(
            "POST", "/v1/worker/poll", PollReply, body=request, timeout_s=request.wait_s + 30
        )

    async def heartbeat(self, state: WorkerState) -> None:
        content = state.model_dump_json().encode()
        await self._http.request("POST", "/v1/worker/heartbeat", content=content)

    async def report(self, job_id: str, report: LeaseReport) -> ReportReply:
        return await self._post(job_id, "report", report)

    async def complete(self, job_id: str, report: CompleteReport) -> ReportReply:
        return await self._post(job_id, "complete", report)

    async def fail(self, job_id: str, report: FailReport) -> ReportReply:
        return await self._post(job_id, "fail", report)

    async def _post(
        self, job_id: str, verb: str, body: LeaseReport | CompleteReport | FailReport
    ) -> ReportReply:
        return await self._http.call(
            "POST", f"/v1/worker/jobs/{job_id}/{verb}", ReportReply, body=body
        )

    async def aclose(self) -> None:
        await self._http.aclose()
