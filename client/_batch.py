"""`map`: many inputs in, results out in input order, one error per failed item."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from garage.contract import Job, JobCreate, Lane

from ._inputs import JobInput, text_of, to_spec
from .errors import GarageError, WaitTimeout

if TYPE_CHECKING:
    from ._async import AsyncClient

__all__ = ["BatchItem", "run_map"]

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
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    from tqdm.auto import tqdm  # only here: importing the client stays light

    bar = tqdm(total=len(items), desc=model, unit="job", disable=not progress)
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

    await asyncio.gather(*(submit(i, spec) for i, spec in specs.items()))

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
        await asyncio.gather(*(wait(i) for i in sorted(handles)))
    finally:
        bar.close()
    return items
