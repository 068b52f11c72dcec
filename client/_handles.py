"""Job handles: what `submit` returns, a thin object over one job id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from garage.contract import Job, JobEvent

from ._inputs import text_of
from .errors import StreamRestarted

if TYPE_CHECKING:
    from ._async import AsyncClient

__all__ = ["AsyncJobHandle"]


class AsyncJobHandle:
    """One job: wait for it, stream its text, cancel it. `job` is the last snapshot read."""

    def __init__(self, client: AsyncClient, job: Job) -> None:
        self._client = client
        self.job = job

    @property
    def id(self) -> str:
        return self.job.id

    def __repr__(self) -> str:
        return f"<AsyncJobHandle {self.id} {self.job.status.value}>"

    async def refresh(self) -> Job:
        self.job = await self._client.get(self.id)
        return self.job

    async def wait(self, timeout_s: float | None = None) -> Job:
        """The finished job; raises JobFailed, JobCancelled, JobExpired or WaitTimeout."""
        self.job = await self._client.wait(self.id, timeout_s=timeout_s)
        return self.job

    async def result(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The OpenAI-shaped response, once the job succeeded."""
        job = await self.wait(timeout_s)
        assert job.result is not None
        return job.result

    async def text(self, timeout_s: float | None = None) -> str:
        """The generated text of a chat or completion job."""
        return text_of(await self.result(timeout_s)) or ""

    async def cancel(self) -> Job:
        self.job = await self._client.cancel(self.id)
        return self.job

    def events(self, *, after: str | None = None) -> AsyncIterator[JobEvent]:
        """Every event until the job ends, resuming by itself after a dropped connection."""
        return self._client.events(self.id, after=after)

    async def stream(self, *, after: str | None = None) -> AsyncIterator[str]:
        """The text as it is generated. If the worker is lost after some text was read,
        raises StreamRestarted rather than glue two attempts together; a restart before
        any text is invisible. Ends when the job ends (then `wait()` tells how)."""
        shown = False
        async for event_id, event in self._client.events_with_ids(self.id, after=after):
            if event.type == "delta":
                shown = shown or bool(event.text)
                yield event.text
            elif event.type == "restart" and shown:
                raise StreamRestarted(
                    f"job {self.id}: {event.reason}; attempt {event.attempt} starts over",
                    attempt=event.attempt,
                    event_id=event_id,
                )
