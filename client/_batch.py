"""`map`: many inputs in, results out in input order, one error per failed item."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from garage.contract import Job, JobCreate, Lane

from ._inputs import JobInput, text_of, to_spec
from ._progress import progress as progress_bar
from .errors import Conflict, GarageError, WaitTimeout

if TYPE_CHECKING:
    from ._async import AsyncClient

__all__ = ["BatchItem", "run_map"]

logger = logging.getLogger(__name__)

_SUBMITS_IN_FLIGHT = 16


@dataclass
class BatchItem:
    """One input's outcome. `error` is set instead of raising, so one bad item never
    costs the others."""

    index: int
    input: JobInput
    job: Job | None = None
    error: GarageError | ValueError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.job is not None

    @property
    def result(self) -> dict[str, Any] | None:
        return self.job.result if self.job else None

    @property
    def text(self) -> str | None:
        return text_of(self.result)

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"error={self.error!s}"
        return f"<BatchItem {self.index} {state}>"


async def run_map(
    client: AsyncClient,
    model: str,
    inputs: Sequence[JobInput],
    *,
    lane: Lane | str = Lane.batch,
    progress: bool = True,
    timeout_s: float | None = None,
    waits_in_flight: int = 64,
    **options: Any,
) -> list[BatchItem]:
    items = [BatchItem(index=i, input=value) for i, value in enumerate(inputs)]
    specs: dict[int, JobCreate] = {}
    for item in items:  # validate every input before anything is submitted
        try:
            specs[item.index] = to_spec(model, item.input, lane=lane, **options)
        except (ValidationError, ValueError) as exc:
            item.error = ValueError(f"input {item.index}: {exc}")
    if specs and not options.get("wait_for_worker"):
        await client.require_served(model)
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    bar = progress_bar(len(items), model, "job", enabled=progress)
    bar.update(len(items) - len(specs))

    submitting = asyncio.Semaphore(_SUBMITS_IN_FLIGHT)
    handles: dict[int, Any] = {}

    async def submit(index: int, spec: JobCreate) -> None:
        async with submitting:
            try:
                handles[index] = await client.submit_spec(spec)
            except GarageError as exc:
                items[index].error = exc
                bar.update()

    waiting = asyncio.Semaphore(waits_in_flight)

    async def wait(index: int) -> None:
        async with waiting:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                items[index].job = await handles[index].wait(timeout_s=remaining)
            except WaitTimeout as exc:
                items[index].job, items[index].error = exc.job, exc
            except GarageError as exc:
                items[index].job = getattr(exc, "job", None)
                items[index].error = exc
            finally:
                bar.update()

    try:
        await asyncio.gather(*(submit(i, spec) for i, spec in specs.items()))
        await asyncio.gather(*(wait(i) for i in sorted(handles)))
    except asyncio.CancelledError:
        # Whoever asked for the lot gave up (Ctrl-C, a timeout around the call): the jobs
        # it queued are cancelled rather than left to run for nobody.
        unfinished = [handles[i].id for i in handles if items[i].job is None]
        await _cancel_unfinished(client, unfinished)
        raise
    finally:
        bar.close()
    return items


async def _cancel_unfinished(client: AsyncClient, job_ids: list[str]) -> None:
    gate = asyncio.Semaphore(_SUBMITS_IN_FLIGHT)

    async def cancel(job_id: str) -> None:
        async with gate:
            with contextlib.suppress(Conflict):  # it ended meanwhile
                await client.cancel(job_id)

    try:
        await asyncio.gather(*(cancel(job_id) for job_id in job_ids))
    except GarageError as exc:
        logger.warning("could not cancel every job that map() queued: %s", exc)
