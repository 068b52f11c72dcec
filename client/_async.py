"""`AsyncClient`: the whole client logic, async. `Client` in `_sync.py` only drives it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from pydantic import TypeAdapter
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from garage.contract import (
    TERMINAL_STATUSES,
    Batch,
    BatchCreate,
    BatchList,
    ContributionGroup,
    ContributionReport,
    FileObject,
    Job,
    JobCreate,
    JobEvent,
    JobList,
    JobStatus,
    KeyCreated,
    KeyInfo,
    KeyLimitsUpdate,
    Kind,
    Lane,
    ModelList,
    Role,
    UsageGroup,
    UsageReport,
    WorkerList,
    job_event_adapter,
)

from . import _batch_runs
from ._batch import BatchItem, run_map
from ._batch_runs import OnProgress
from ._handles import AsyncJobHandle
from ._http import Requester
from ._inputs import JobInput, to_spec
from .errors import (
    BrokerUnreachable,
    JobCancelled,
    JobExpired,
    JobFailed,
    RateLimited,
    Unavailable,
    WaitTimeout,
    error_for_status,
)

__all__ = ["AsyncClient"]

_KEY_LIST = TypeAdapter(list[KeyInfo])
_WAIT_SLICE_S = 30.0  # one long-poll of GET /v1/jobs/{id}?wait_s=
_TERMINAL_EVENTS = ("done", "error")
_MAX_RESUMES = 8  # consecutive drops of an event stream before giving up
_SUBMIT_TRIES = 4  # a submit sent again (same Idempotency-Key) after a broken connection
_RATE_LIMIT_WAIT_S = 300.0  # longest a submit waits out the key's quotas (429) in all


class AsyncClient:
    """Talks to a garage broker. Configured by arguments, else `GARAGE_URL` / `GARAGE_API_KEY`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._http = Requester(url, api_key, http=http, timeout_s=timeout_s)

    @property
    def url(self) -> str:
        return self._http.url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # jobs

    async def submit(
        self,
        model: str,
        input: JobInput,
        *,
        kind: Kind | str | None = None,
        lane: Lane | str = Lane.interactive,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> AsyncJobHandle:
        """Queues a job and returns its handle. `input` is a prompt (chat unless `kind`
        says otherwise), a list of chat messages, or an OpenAI-shaped request body.
        `options` are JobCreate's: max_attempts, start_timeout_s, timeout_s, metadata,
        wait_for_worker."""
        spec = to_spec(model, input, kind=kind, lane=lane, **options)
        return await self.submit_spec(spec, idempotency_key=idempotency_key)

    async def submit_spec(
        self, spec: JobCreate, *, idempotency_key: str | None = None, wait_s: float = 0
    ) -> AsyncJobHandle:
        """Queues a job; with `wait_s` the broker answers once it ended, or after that long.

        Every submit carries an `Idempotency-Key` (a fresh one unless given), so a submit
        whose connection broke before the answer (the broker may have read it) is sent
        again with the same key, a few times within seconds, and the broker answers with
        the job the first one made, never a second job. A submit refused by the key's
        quotas (429) is sent again when the broker says (`Retry-After`), for up to five
        minutes in all; then RateLimited is raised."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        if wait_s > 0:
            headers["Prefer"] = f"wait={wait_s:g}"
        send = functools.partial(
            self._http.call,
            "POST",
            "/v1/jobs",
            Job,
            body=spec,
            exclude_none=True,
            headers=headers,
            timeout_s=wait_s + 30 if wait_s > 0 else None,
        )
        give_up_at = time.monotonic() + _RATE_LIMIT_WAIT_S
        while True:
            try:
                job = await _sent_through_drops(send)
                return AsyncJobHandle(self, job)
            except RateLimited as refused:
                wait_s = refused.retry_after_s if refused.retry_after_s is not None else 1.0
                if time.monotonic() + wait_s > give_up_at:
                    raise
                await asyncio.sleep(wait_s + random.uniform(0, 0.1 * wait_s))

    async def run(
        self,
        model: str,
        input: JobInput,
        *,
        timeout_s: float | None = None,
        kind: Kind | str | None = None,
        lane: Lane | str = Lane.interactive,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """Submits a job and waits for its end: one request when it ends within the
        broker's wait (`Prefer: wait`), then long-polls. Returns the finished job; raises
        JobFailed, JobCancelled, JobExpired, or WaitTimeout after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        spec = to_spec(model, input, kind=kind, lane=lane, **options)
        wait_s = _WAIT_SLICE_S if timeout_s is None else min(timeout_s, _WAIT_SLICE_S)
        handle = await self.submit_spec(spec, idempotency_key=idempotency_key, wait_s=wait_s)
        if handle.job.status in TERMINAL_STATUSES:
            return _raise_unless_succeeded(handle.job)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return await self.wait(handle.id, timeout_s=remaining)

    async def job(self, job_id: str) -> AsyncJobHandle:
        """A handle on a job submitted earlier."""
        return AsyncJobHandle(self, await self.get(job_id))

    async def map(
        self,
        model: str,
        inputs: Sequence[JobInput],
        *,
        lane: Lane | str = Lane.batch,
        progress: bool = True,
        timeout_s: float | None = None,
        **options: Any,
    ) -> list[BatchItem]:
        """Runs one job per input and returns their outcomes in input order, each with its
        own error (never one exception for the lot). Shows a progress bar (tqdm: a widget
        in notebooks, text in terminals) unless `progress=False`."""
        return await run_map(
            self, model, inputs, lane=lane, progress=progress, timeout_s=timeout_s, **options
        )

    async def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        timeout = wait_s + 30 if wait_s else None
        body = await self._http.json(
            "GET", f"/v1/jobs/{job_id}", params={"wait_s": wait_s or None}, timeout_s=timeout
        )
        return Job.model_validate(body)

    async def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """Waits for the job to end; raises unless it succeeded."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = _WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
            job = await self.get(job_id, wait_s=max(0.0, min(remaining, _WAIT_SLICE_S)))
            if job.status in TERMINAL_STATUSES:
                return _raise_unless_succeeded(job)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.status.value} after {timeout_s} s", job)

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate(await self._http.json("POST", f"/v1/jobs/{job_id}/cancel"))

    async def list(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        status: JobStatus | str | None = None,
        model: str | None = None,
    ) -> JobList:
        params = {"limit": limit, "after": after, "status": status and str(status), "model": model}
        return JobList.model_validate(await self._http.json("GET", "/v1/jobs", params=params))

    async def events(self, job_id: str, *, after: str | None = None) -> AsyncIterator[JobEvent]:
        """The job's events until it ends. A dropped connection resumes after the last
        event received (`Last-Event-ID`), so no event is lost or repeated."""
        async with contextlib.aclosing(self.events_with_ids(job_id, after=after)) as events:
            async for _, event in events:
                yield event

    async def events_with_ids(
        self, job_id: str, *, after: str | None = None
    ) -> AsyncIterator[tuple[str, JobEvent]]:
        """`events`, each with its id (the position to resume after)."""
        position = after
        drops = 0
        while True:
            try:
                # Closed here, not by the garbage collector, when the caller stops early:
                # the stream's connection is let go in this task, in order.
                async with contextlib.aclosing(self._read_events(job_id, position)) as reading:
                    async for event_id, event in reading:
                        drops = 0
                        position = event_id
                        yield event_id, event
                        if event.type in _TERMINAL_EVENTS:
                            return
            except (httpx.TransportError, BrokerUnreachable):
                pass  # resumed below from the last event received
            # The stream broke or closed before the job ended: back off, then resume.
            drops += 1
            if drops > _MAX_RESUMES:
                raise BrokerUnreachable(f"event stream of job {job_id} kept dropping")
            await asyncio.sleep(min(5.0, 0.1 * 2**drops) * random.uniform(0.5, 1.0))

    async def _read_events(
        self, job_id: str, position: str | None
    ) -> AsyncIterator[tuple[str, JobEvent]]:
        headers = dict(self._http.headers)
        if position:
            headers["Last-Event-ID"] = position
        url = f"{self._http.url}/v1/jobs/{job_id}/events"
        timeout = httpx.Timeout(None, connect=10.0)
        async with aconnect_sse(
            self._http.http, "GET", url, headers=headers, timeout=timeout
        ) as source:
            response = source.response
            if response.status_code >= 400:
                await response.aread()
                raise error_for_status(response.status_code, response.json())
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue
                yield sse.id, job_event_adapter.validate_json(sse.data)

    # keys and fleet

    async def create_key(
        self, role: Role | str, name: str, *, owner: str | None = None
    ) -> KeyCreated:
        """A new key (an admin key); `owner`, for a worker key, is the user key id that owns
        the rig and is credited with its contribution."""
        fields: dict[str, str] = {"role": str(Role(role)), "name": name}
        if owner is not None:
            fields["owner"] = owner
        body = await self._http.json("POST", "/v1/admin/keys", json=fields)
        return KeyCreated.model_validate(body)

    async def keys(self) -> list[KeyInfo]:
        """Every key (an admin key): id, role, name and its own limits; no secrets."""
        return _KEY_LIST.validate_python(await self._http.json("GET", "/v1/admin/keys"))

    async def rotate_key(self, key_id: str) -> KeyCreated:
        """A new secret for a key (the same id); the old secret stops working at once."""
        return await self._http.call("POST", f"/v1/admin/keys/{key_id}/rotate", KeyCreated)

    async def revoke_key(self, key_id: str) -> None:
        """Revokes a key; every broker refuses it within a second."""
        await self._http.request("DELETE", f"/v1/admin/keys/{key_id}")

    async def set_key_limits(self, key_id: str, limits: KeyLimitsUpdate) -> KeyInfo:
        """Sets a key's own limits (a field left None takes the broker's default)."""
        return await self._http.call("PUT", f"/v1/admin/keys/{key_id}/limits", KeyInfo, body=limits)

    async def workers(self) -> WorkerList:
        return WorkerList.model_validate(await self._http.json("GET", "/v1/workers"))

    async def usage(
        self,
        *,
        start: date | str | None = None,
        end: date | str | None = None,
        days: int | None = None,
        model: str | None = None,
        owner: str | None = None,
        group_by: Sequence[UsageGroup | str] | None = None,
    ) -> UsageReport:
        """Jobs and tokens per UTC day and model from `start` (or the last `days` days) to
        `end`, both included; by default the last 30 days, by the broker's clock. Your
        key's own, or with an admin key everyone's per owner (or one `owner`'s)."""
        params = {
            "start": start and str(start),
            "end": end and str(end),
            "days": days,
            "model": model,
            "owner": owner,
            "group_by": ",".join(str(UsageGroup(g)) for g in group_by) if group_by else None,
        }
        return UsageReport.model_validate(await self._http.json("GET", "/v1/usage", params=params))

    async def contributions(
        self,
        *,
        start: date | str | None = None,
        end: date | str | None = None,
        days: int | None = None,
        key: str | None = None,
        owner: str | None = None,
        group_by: Sequence[ContributionGroup | str] | None = None,
    ) -> ContributionReport:
        """What the rigs gave the pool from `start` (or the last `days` days) to `end`,
        both included (by default the last 30 days, by the broker's clock): jobs
        completed, the seconds they ran, tokens generated and points, per owner and worker
        key (the default `group_by`), or by `worker` and `day`; highest points first. Any
        user key reads every worker key's (one `key`'s, or one `owner`'s keys'); a worker
        key reads its own."""
        params = {
            "start": start and str(start),
            "end": end and str(end),
            "days": days,
            "key": key,
            "owner": owner,
            "group_by": ",".join(str(ContributionGroup(g)) for g in group_by) if group_by else None,
        }
        reply = await self._http.json("GET", "/v1/contributions", params=params)
        return ContributionReport.model_validate(reply)

    # files and batches (OpenAI's Batch API)

    async def upload_batch_file(self, filename: str, text: str) -> FileObject:
        """Uploads JSONL in OpenAI's batch format (purpose `batch`)."""
        body = await self._http.json(
            "POST",
            "/v1/files",
            files={"file": (filename, text.encode())},
            data={"purpose": "batch"},
        )
        return FileObject.model_validate(body)

    async def file_text(self, file_id: str) -> str:
        return (await self._http.request("GET", f"/v1/files/{file_id}/content")).text

    async def create_batch(
        self, input_file_id: str, endpoint: str, *, metadata: dict[str, str] | None = None
    ) -> Batch:
        spec = BatchCreate(input_file_id=input_file_id, endpoint=endpoint, metadata=metadata)
        body = await self._http.json(
            "POST", "/v1/batches", json=spec.model_dump(mode="json", exclude_none=True)
        )
        return Batch.model_validate(body)

    async def batch(
        self, batch_id: str, *, wait_s: float = 0, after_done: int | None = None
    ) -> Batch:
        """The batch; with `wait_s`, the broker answers once more than `after_done` of its
        requests ended (None: once it reached a final status), or after `wait_s`."""
        body = await self._http.json(
            "GET",
            f"/v1/batches/{batch_id}",
            params={"wait_s": wait_s or None, "after_done": after_done if wait_s else None},
            timeout_s=wait_s + 30 if wait_s else None,
        )
        return Batch.model_validate(body)

    async def wait_batch(
        self,
        batch_id: str,
        *,
        timeout_s: float | None = None,
        on_progress: OnProgress | None = None,
    ) -> Batch:
        """Waits until the batch reaches a final status (its output files are written then)
        and returns it; after `timeout_s` it returns the batch as it is (check `status`).
        `on_progress` gets the batch once at the start and each time its counts change."""
        return await _batch_runs.wait(self, batch_id, timeout_s=timeout_s, on_progress=on_progress)

    async def submit_batch(
        self,
        model: str,
        inputs: Sequence[JobInput],
        *,
        kind: Kind | str | None = None,
        custom_ids: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
        wait_for_worker: bool = False,
    ) -> list[Batch]:
        """Sends the inputs through the Batch API: one uploaded file and one batch per
        endpoint they need (chat, completion, embedding), in that order. Inputs are read as
        `submit` reads them; each is named by its custom_id (`item-<index>` by default).
        Raises ValueError naming the first bad input, or Unavailable when no live worker
        serves `model` (unless `wait_for_worker`), before anything is sent."""
        requests = _batch_runs.batch_requests(model, inputs, kind=kind, custom_ids=custom_ids)
        if not wait_for_worker:
            await self.require_served(model)
        return await _batch_runs.submit(self, requests, metadata=metadata)

    async def run_batch(
        self,
        model: str,
        inputs: Sequence[JobInput],
        *,
        kind: Kind | str | None = None,
        custom_ids: Sequence[str] | None = None,
        timeout_s: float | None = None,
        on_progress: OnProgress | None = None,
        metadata: dict[str, str] | None = None,
        wait_for_worker: bool = False,
    ) -> list[dict[str, Any]]:
        """`submit_batch`, then waits for every batch and returns one line per input, in
        input order, in OpenAI's batch output format: `response` (status_code 200 and the
        body, or the error of a failed request) or `error` (code and message). A request
        whose batch did not finish within `timeout_s` gets the error code `unfinished`.
        `on_progress` is `wait_batch`'s, called for each batch. Cancelling the call (Ctrl-C,
        a timeout around it) cancels the batches it started."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        requests = _batch_runs.batch_requests(model, inputs, kind=kind, custom_ids=custom_ids)
        if not wait_for_worker:
            await self.require_served(model)
        started: list[Batch] = []
        try:
            started = await _batch_runs.submit(self, requests, metadata=metadata)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            finished = await asyncio.gather(
                *(
                    self.wait_batch(batch.id, timeout_s=remaining, on_progress=on_progress)
                    for batch in started
                )
            )
        except asyncio.CancelledError:
            await _batch_runs.cancel_quietly(self, [batch.id for batch in started])
            raise
        order = [(request.custom_id, request.spec.kind) for request in requests]
        return await _batch_runs.read_lines(self, finished, order, timeout_s=timeout_s)

    async def batch_lines(
        self,
        batch_id: str,
        *,
        timeout_s: float | None = None,
        on_progress: OnProgress | None = None,
    ) -> list[dict[str, Any]]:
        """Waits for a batch (as `wait_batch`) and returns one line per request of its input
        file, in the input's order, as `run_batch` does."""
        batch = await self.wait_batch(batch_id, timeout_s=timeout_s, on_progress=on_progress)
        requests = _batch_runs.requests_of(await self.file_text(batch.input_file_id))
        return await _batch_runs.read_lines(self, [batch], requests, timeout_s=timeout_s)

    async def batches(self, *, limit: int = 20, after: str | None = None) -> BatchList:
        """Your batches, newest first."""
        params = {"limit": limit, "after": after}
        return BatchList.model_validate(await self._http.json("GET", "/v1/batches", params=params))

    async def cancel_batch(self, batch_id: str) -> Batch:
        body = await self._http.json("POST", f"/v1/batches/{batch_id}/cancel")
        return Batch.model_validate(body)

    async def models(self) -> ModelList:
        """Models live workers serve now."""
        return ModelList.model_validate(await self._http.json("GET", "/v1/models"))

    async def require_served(self, model: str) -> None:
        """Raises Unavailable (code `model_not_served`) unless a live worker serves `model`:
        `map` and the batch calls ask first, since the broker queues batch work for a model
        nobody serves until its deadline, without a word."""
        if not any(served.id == model for served in (await self.models()).data):
            raise Unavailable(
                503,
                f"no live worker serves model {model!r}; pass wait_for_worker=True to queue "
                "the work anyway",
                code="model_not_served",
                type="service_unavailable",
            )


def _raise_unless_succeeded(job: Job) -> Job:
    if job.status is JobStatus.succeeded:
        return job
    message = job.error.message if job.error else job.status.value
    if job.status is JobStatus.cancelled:
        raise JobCancelled(f"job {job.id} was cancelled", job)
    if job.status is JobStatus.expired:
        raise JobExpired(f"job {job.id} expired: {message}", job)
    raise JobFailed(f"job {job.id} failed: {message}", job)


async def _sent_through_drops(send: Any) -> Job:
    """`send()`, sent again a few times (the same request, the same Idempotency-Key)
    while the connection drops before an answer."""
    try:  # tenacity's machinery (tens of µs) only once a send has failed
        return await send()
    except BrokerUnreachable:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(BrokerUnreachable),
            stop=stop_after_attempt(_SUBMIT_TRIES - 1),
            wait=wait_random_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )
        return await retrying(send)
