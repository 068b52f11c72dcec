"""`Client`: the blocking face of `AsyncClient`, safe where an event loop already runs.

Every call is handed to a private event loop on a daemon thread and waited for, so a
Jupyter cell (whose thread runs the notebook's own loop) can call it like any function.
The logic lives once, in `AsyncClient`; this module only moves calls between threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from garage.contract import (
    Batch,
    BatchList,
    ContributionReport,
    Job,
    JobEvent,
    JobList,
    KeyCreated,
    KeyInfo,
    KeyLimitsUpdate,
    Kind,
    Lane,
    ModelList,
    UsageReport,
    WorkerList,
)

from ._async import AsyncClient
from ._batch import BatchItem
from ._batch_runs import OnProgress
from ._handles import AsyncJobHandle
from ._inputs import JobInput

__all__ = ["Client", "JobHandle"]

T = TypeVar("T")

_UNDO_S = 30.0  # how long Ctrl-C waits for a call to cancel what it started


class _LoopThread:
    """An event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="garage-client", daemon=True
        )
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Runs `awaitable` on the loop and waits for it. Ctrl-C (KeyboardInterrupt) while
        waiting cancels it there, so the call can undo what it started (`map` cancels its
        jobs, `run_batch` its batches), and waits for that; a second Ctrl-C leaves at once."""
        ended = threading.Event()

        async def call() -> T:
            try:
                return await awaitable
            finally:
                ended.set()

        future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            ended.wait(_UNDO_S)
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class JobHandle:
    """The blocking face of `AsyncJobHandle`."""

    def __init__(self, runner: _LoopThread, handle: AsyncJobHandle) -> None:
        self._run = runner
        self._handle = handle

    @property
    def id(self) -> str:
        return self._handle.id

    @property
    def job(self) -> Job:
        return self._handle.job

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.job.status.value}>"

    def refresh(self) -> Job:
        return self._run.run(self._handle.refresh())

    def wait(self, timeout_s: float | None = None) -> Job:
        return self._run.run(self._handle.wait(timeout_s))

    def result(self, timeout_s: float | None = None) -> dict[str, Any]:
        return self._run.run(self._handle.result(timeout_s))

    def text(self, timeout_s: float | None = None) -> str:
        return self._run.run(self._handle.text(timeout_s))

    def cancel(self) -> Job:
        return self._run.run(self._handle.cancel())

    def stream(self, *, after: str | None = None) -> Iterator[str]:
        return self._run.iterate(self._handle.stream(after=after))

    def events(self, *, after: str | None = None) -> Iterator[JobEvent]:
        return self._run.iterate(self._handle.events(after=after))


class Client:
    """Talks to a garage broker, blocking. Configured by arguments, else `GARAGE_URL` and
    `GARAGE_API_KEY`. Close it (or use `with`) to stop its thread."""

    def __init__(
        self, url: str | None = None, api_key: str | None = None, *, timeout_s: float | None = None
    ) -> None:
        self._run = _LoopThread()

        async def make() -> AsyncClient:  # its HTTP sessions belong to the private loop
            return AsyncClient(url, api_key, timeout_s=timeout_s)

        self._client = self._run.run(make())

    @property
    def url(self) -> str:
        return self._client.url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._run.run(self._client.aclose())
        self._run.stop()

    def _call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return self._run.run(method(*args, **kwargs))

    def submit(self, model: str, input: JobInput, **options: Any) -> JobHandle:
        """Queues a job; see `AsyncClient.submit`."""
        return JobHandle(self._run, self._call(self._client.submit, model, input, **options))

    def run(
        self, model: str, input: JobInput, *, timeout_s: float | None = None, **options: Any
    ) -> Job:
        """Submits a job and waits for its end; see `AsyncClient.run`."""
        return self._call(self._client.run, model, input, timeout_s=timeout_s, **options)

    def job(self, job_id: str) -> JobHandle:
        return JobHandle(self._run, self._call(self._client.job, job_id))

    def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        return self._call(self._client.get, job_id, wait_s=wait_s)

    def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        return self._call(self._client.wait, job_id, timeout_s=timeout_s)

    def cancel(self, job_id: str) -> Job:
        return self._call(self._client.cancel, job_id)

    def list(self, **filters: Any) -> JobList:
        return self._call(self._client.list, **filters)

    def events(self, job_id: str, *, after: str | None = None) -> Iterator[JobEvent]:
        return self._run.iterate(self._client.events(job_id, after=after))

    def map(
        self,
        model: str,
        inputs: Sequence[JobInput],
        *,
        lane: Lane | str = Lane.batch,
        progress: bool = True,
        timeout_s: float | None = None,
        **options: Any,
    ) -> list[BatchItem]:
        """See `AsyncClient.map`."""
        return self._call(
            self._client.map,
            model,
            inputs,
            lane=lane,
            progress=progress,
            timeout_s=timeout_s,
            **options,
        )

    def batch(self, batch_id: str, *, wait_s: float = 0, after_done: int | None = None) -> Batch:
        """See `AsyncClient.batch`."""
        return self._call(self._client.batch, batch_id, wait_s=wait_s, after_done=after_done)

    def wait_batch(
        self,
        batch_id: str,
        *,
        timeout_s: float | None = None,
        on_progress: OnProgress | None = None,
    ) -> Batch:
        """See `AsyncClient.wait_batch`; `on_progress` runs on the client's own thread."""
        return self._call(
            self._client.wait_batch, batch_id, timeout_s=timeout_s, on_progress=on_progress
        )

    def submit_batch(
        self,
        model: str,
        inputs: Sequence[JobInput],
        *,
        kind: Kind | str | None = None,
        custom_ids: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
        wait_for_worker: bool = False,
    ) -> list[Batch]:
        """See `AsyncClient.submit_batch`."""
        return self._call(
            self._client.submit_batch,
            model,
            inputs,
            kind=kind,
            custom_ids=custom_ids,
            metadata=metadata,
            wait_for_worker=wait_for_worker,
        )

    def run_batch(
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
        """See `AsyncClient.run_batch`; `on_progress` runs on the client's own thread."""
        return self._call(
            self._client.run_batch,
            model,
            inputs,
            kind=kind,
            custom_ids=custom_ids,
            timeout_s=timeout_s,
            on_progress=on_progress,
            metadata=metadata,
            wait_for_worker=wait_for_worker,
        )

    def batch_lines(
        self,
        batch_id: str,
        *,
        timeout_s: float | None = None,
        on_progress: OnProgress | None = None,
    ) -> list[dict[str, Any]]:
        """See `AsyncClient.batch_lines`."""
        return self._call(
            self._client.batch_lines, batch_id, timeout_s=timeout_s, on_progress=on_progress
        )

    def batches(self, *, limit: int = 20, after: str | None = None) -> BatchList:
        return self._call(self._client.batches, limit=limit, after=after)

    def cancel_batch(self, batch_id: str) -> Batch:
        return self._call(self._client.cancel_batch, batch_id)

    def models(self) -> ModelList:
        return self._call(self._client.models)

    def workers(self) -> WorkerList:
        return self._call(self._client.workers)

    def usage(self, **filters: Any) -> UsageReport:
        """`AsyncClient.usage`: start, end, model, owner, group_by."""
        return self._call(self._client.usage, **filters)

    def contributions(self, **filters: Any) -> ContributionReport:
        """`AsyncClient.contributions`: start, end, days, key, owner, group_by."""
        return self._call(self._client.contributions, **filters)

    def create_key(self, role: str, name: str, *, owner: str | None = None) -> KeyCreated:
        return self._call(self._client.create_key, role, name, owner=owner)

    def keys(self) -> list[KeyInfo]:
        return self._call(self._client.keys)

    def rotate_key(self, key_id: str) -> KeyCreated:
        return self._call(self._client.rotate_key, key_id)

    def revoke_key(self, key_id: str) -> None:
        self._call(self._client.revoke_key, key_id)

    def set_key_limits(self, key_id: str, limits: KeyLimitsUpdate) -> KeyInfo:
        return self._call(self._client.set_key_limits, key_id, limits)
